/**
 * `tproxyctl ca [rotate | install | uninstall]`: the CA that signs the leaf certificates
 * intercepted programs see. Without an action: subject, SHA-256 fingerprint, expiry and where it is
 * trusted, or with `--pem` only the certificate (`tproxyctl ca --pem > tproxy.crt`). The actions
 * change trust: `install` keeps the CA in the OS trust store beyond captures, `uninstall` undoes
 * it, `rotate` replaces the CA. With `--nss` install/uninstall change the invoking user's NSS
 * database instead, right here as that user (trust/nss.ts says why not in the helper).
 */
import { methods, type CaGetResult } from '@tproxy/protocol';
import { UsageError, boolFlag, expectPositionals, stringFlag, type Command, type Context } from '../command.js';
import { formatCa, formatPem, jsonLine } from '../output.js';
import { escapeInline } from '../../shared/escape.js';
import { installNss, nssTarget, uninstallNss, type NssHost } from '../../trust/nss.js';
import { realNssHost } from '../../trust/nss-host.js';

const ACTIONS = ['rotate', 'install', 'uninstall'] as const;
type Action = (typeof ACTIONS)[number];

/** Printed after a rotation: the helper cannot reach NSS databases, their entries name the old CA. */
export const NSS_ROTATE_HINT =
  'NSS databases (Chromium, Firefox) still trust the old CA: run `tproxyctl ca install --nss` as each user who installed it there (it replaces the old entry)';

export const caCommand: Command = {
  name: 'ca',
  summary: 'Show the CA and where it is trusted; rotate, install or uninstall it',
  usage: `Usage: tproxyctl ca [--pem | --json]
       tproxyctl ca install [--nss [--nss-db DIR]]
       tproxyctl ca uninstall [--nss [--nss-db DIR]]
       tproxyctl ca rotate

Without an action: the CA certificate's subject, SHA-256 fingerprint, expiry, and where it is
trusted (OS trust store, persistently or for the running capture). The private key never leaves
the helper.

  install      Keep the CA in the OS trust store after capture stops and across restarts (a
               capture otherwise installs it only while it runs)
  uninstall    Remove the persistent install (a running capture keeps its own entry until it stops)
  rotate       Replace the CA with a new one; the OS trust-store entry moves to it (stop capture
               first). NSS entries must be re-installed: tproxyctl ca install --nss

  --nss        Instead of the OS trust store: YOUR NSS database (~/.pki/nssdb: Chromium and other
               NSS programs), changed by this process as you, with certutil (libnss3-tools).
               install adds the CA as "tproxy CA <first 8 hex of its SHA-256>" (creating the
               database if missing) and removes an older "tproxy CA *" left by a rotated CA;
               uninstall removes every "tproxy CA *" entry and needs no helper. For another
               user: sudo -u NAME -H tproxyctl ca install --nss
  --nss-db DIR Another NSS database directory, e.g. a Firefox profile
               (~/.mozilla/firefox/<name>.default-release); implies --nss. Restart the browser.
  --pem        Print only the certificate, PEM-encoded
  --json       Print the raw result`,
  flags: { pem: { type: 'boolean' }, nss: { type: 'boolean' }, 'nss-db': { type: 'string' } },
  async run(ctx, args) {
    expectPositionals(args, 0, 1, '');
    const action = args.positionals[0];
    if (action !== undefined && !(ACTIONS as readonly string[]).includes(action)) {
      throw new UsageError(`unknown action '${action}' (expected ${ACTIONS.join(', ')})`);
    }
    const pem = boolFlag(args, 'pem');
    const nssDb = stringFlag(args, 'nss-db');
    const nss = boolFlag(args, 'nss') || nssDb !== undefined;
    if (pem && ctx.json) throw new UsageError('--pem and --json cannot be combined');
    if (pem && action) throw new UsageError(`--pem only goes with plain 'tproxyctl ca'`);
    if (nss && action !== 'install' && action !== 'uninstall') throw new UsageError('--nss and --nss-db go with install or uninstall');
    if (nss) return runNss(ctx, action as 'install' | 'uninstall', nssDb, realNssHost);
    const client = await ctx.connect();
    let ca: CaGetResult;
    let done = '';
    let hint = '';
    switch (action as Action | undefined) {
      case 'install':
        ca = await client.call(methods.caInstall, {});
        done = 'CA installed persistently';
        break;
      case 'uninstall':
        ca = await client.call(methods.caUninstall, {});
        done = 'persistent CA install removed';
        break;
      case 'rotate': {
        const rotated = await client.call(methods.caRotate, {});
        ca = rotated;
        done = `CA rotated; replaced ${rotated.previousFingerprintSha256}`;
        hint = NSS_ROTATE_HINT;
        break;
      }
      default:
        ca = await client.call(methods.caGet, {});
    }
    if (ctx.json) {
      ctx.print(jsonLine(ca));
      if (hint) ctx.warn(`${hint}\n`);
    } else if (pem) ctx.print(formatPem(ca.pem));
    else ctx.print(`${done ? `${escapeInline(done)}\n` : ''}${formatCa(ca)}${formatTrust(ca)}${hint ? `\n${hint}\n` : ''}`);
    return 0;
  },
};

/**
 * `ca install --nss` / `ca uninstall --nss`: as this process's user, on its own database. Install
 * needs the certificate (`ca.get`, read access); uninstall goes by nickname and needs no helper,
 * so it still works once the helper is gone.
 */
export async function runNss(ctx: Context, action: 'install' | 'uninstall', dbDir: string | undefined, host: NssHost): Promise<number> {
  const target = nssTarget({ ...(dbDir !== undefined ? { dbDir } : {}), home: ctx.io.env.HOME, cwd: process.cwd() });
  if (action === 'uninstall') {
    const r = await uninstallNss(host, target);
    if (ctx.json) ctx.print(jsonLine(r));
    else if (r.removed.length === 0) ctx.print(`no tproxy CA in the NSS database ${escapeInline(r.db)}; nothing to remove\n`);
    else ctx.print(`removed ${r.removed.map((n) => escapeInline(n)).join(', ')} from the NSS database ${escapeInline(r.db)}\n`);
    return 0;
  }
  const ca = await (await ctx.connect()).call(methods.caGet, {});
  const r = await installNss(host, target, ca.pem, ca.fingerprintSha256);
  if (ctx.json) {
    ctx.print(jsonLine(r));
    return 0;
  }
  const lines = [
    `CA added to the NSS database ${escapeInline(r.db)}${r.created ? ' (created)' : ''} as "${escapeInline(r.nickname)}"`,
    ...(r.removed.length ? [`removed the older ${r.removed.map((n) => `"${escapeInline(n)}"`).join(', ')} (a rotated CA)`] : []),
    'restart the browser to pick it up',
    ...(host.uid === 0 ? ['note: this is root\'s own database; for another user run: sudo -u NAME -H tproxyctl ca install --nss'] : []),
  ];
  ctx.print(`${lines.join('\n')}\n`);
  return 0;
}

/** The persistent line, from helpers that report it. */
export function formatTrust(ca: CaGetResult): string {
  if (ca.persistent === undefined) return '';
  return `persistent: ${ca.persistent ? 'yes (kept after capture stops; tproxyctl ca uninstall removes it)' : 'no'}\n`;
}
