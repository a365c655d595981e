import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Io } from './command.js';
import { main } from './main.js';
import { executePlan, formatPlan, helperBin, planInstall, planUninstall, renderUnits, templatePaths, type RenderedUnits } from './service-units.js';

const execFileP = promisify(execFile);

async function templates(): Promise<RenderedUnits> {
  const p = templatePaths();
  return { socket: await readFile(p.socket, 'utf8'), service: await readFile(p.service, 'utf8') };
}

function recordingIo() {
  let out = '';
  let err = '';
  const io: Io = { stdout: { write: (c) => (out += String(c)) }, stderr: { write: (c) => (err += c) }, env: {} };
  return { io, stdout: () => out, stderr: () => err };
}

const hasAnalyze = await execFileP('systemd-analyze', ['--version']).then(
  () => true,
  () => false,
);

describe('renderUnits', () => {
  it('fills every placeholder, drops template-only comments, keeps the hardening and ExecStopPost', async () => {
    const units = renderUnits(await templates(), { node: '/usr/bin/node', helper: '/opt/tproxy/node_modules/.bin/tproxy-helper' });
    for (const text of [units.socket, units.service]) {
      assert.doesNotMatch(text, /@[A-Z_]+@/);
      assert.doesNotMatch(text, /^#@/m);
    }
    assert.match(units.socket, /^SocketUser=root$/m);
    assert.match(units.socket, /^SocketMode=0600$/m);
    assert.match(units.service, /^ExecStart=\/usr\/bin\/node \/opt\/tproxy\/node_modules\/\.bin\/tproxy-helper$/m);
    assert.match(units.service, /^ExecStopPost=\/usr\/bin\/node \/opt\/tproxy\/node_modules\/\.bin\/tproxy-helper --cleanup --keep-socket$/m);
    assert.match(units.service, /^ProtectHome=yes$/m);
    assert.match(units.service, /^NoNewPrivileges=yes$/m);
    assert.match(units.service, /^CapabilityBoundingSet=CAP_NET_ADMIN$/m);
    // `tproxyctl run` creates cgroups: /sys/fs/cgroup must stay writable for the helper.
    assert.match(units.service, /^ProtectControlGroups=no$/m);
  });

  it('--user: SocketUser= is the uid and the helper allows it', async () => {
    const units = renderUnits(await templates(), { node: '/usr/bin/node', helper: '/opt/t/node_modules/.bin/tproxy-helper', uid: 1000 });
    assert.match(units.socket, /^SocketUser=1000$/m);
    assert.match(units.service, /^ExecStart=\S+ \S+ --allow-uid 1000$/m);
    const root = renderUnits(await templates(), { node: '/usr/bin/node', helper: '/opt/t/h', uid: 0 });
    assert.match(root.socket, /^SocketUser=root$/m);
    assert.doesNotMatch(root.service, /--allow-uid/);
  });

  it('a checkout under /home gets ProtectHome=read-only, since yes would hide the helper', async () => {
    const units = renderUnits(await templates(), { node: '/usr/bin/node', helper: '/home/ann/tproxy/node_modules/.bin/tproxy-helper' });
    assert.match(units.service, /^ProtectHome=read-only$/m);
  });

  it('refuses paths systemd would reinterpret, and unknown placeholders', async () => {
    assert.throws(() => renderUnits({ socket: '', service: '' }, { node: 'node', helper: '/x' }), /must be absolute/);
    assert.throws(() => renderUnits({ socket: '', service: '' }, { node: '/usr/bin/node', helper: '/my dir/h' }), /must be absolute/);
    assert.throws(() => renderUnits({ socket: '', service: '' }, { node: '/usr/bin/node', helper: '/x/%h' }), /must be absolute/);
    assert.throws(() => renderUnits({ socket: 'x=@NOPE@', service: '' }, { node: '/n', helper: '/h' }), /unknown placeholder @NOPE@/);
  });

  it('rendered units pass systemd-analyze verify (real executable paths)', { skip: hasAnalyze ? false : 'systemd-analyze not installed' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tproxy-units-'));
    try {
      // A real, executable helper path: verify checks ExecStart= points at an executable.
      const helper = join(dir, 'tproxy-helper');
      await writeFile(helper, '#!/bin/sh\n', { mode: 0o755 });
      for (const uid of [undefined, 65534]) {
        const units = renderUnits(await templates(), { node: process.execPath, helper, ...(uid !== undefined ? { uid } : {}) });
        await writeFile(join(dir, 'tproxy-helper.socket'), units.socket);
        await writeFile(join(dir, 'tproxy-helper.service'), units.service);
        const r = await execFileP('systemd-analyze', ['verify', join(dir, 'tproxy-helper.socket'), join(dir, 'tproxy-helper.service')]).catch(
          (err: { code: number; stdout: string; stderr: string }) => err,
        );
        assert.equal('code' in r ? r.code : 0, 0, `systemd-analyze verify failed:\n${r.stdout}${r.stderr}`);
        // verify exits 0 on some warnings; none of ours may produce any.
        assert.equal(r.stderr.trim(), '', r.stderr);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('plans', () => {
  it('install writes both units, reloads and enables the socket; formatPlan shows all of it', () => {
    const steps = planInstall('/etc/systemd/system', { socket: 'S\n', service: 'A\nB\n' });
    assert.equal(
      formatPlan(steps),
      [
        'would write /etc/systemd/system/tproxy-helper.socket (mode 0644):',
        '  | S',
        'would write /etc/systemd/system/tproxy-helper.service (mode 0644):',
        '  | A',
        '  | B',
        'would run: systemctl daemon-reload',
        'would run: systemctl enable --now tproxy-helper.socket',
        '',
      ].join('\n'),
    );
  });

  it('uninstall stops first (tolerated), removes, reloads, then cleans up', async () => {
    const steps = planUninstall('/u', '/usr/bin/node', '/p/h');
    const done: string[] = [];
    await executePlan(steps, {
      writeFile: async () => assert.fail('no writes'),
      remove: async (p) => void done.push(`rm ${p}`),
      run: async (argv) => (done.push(argv.join(' ')), argv[1] === 'disable' ? 5 : 0),
      say: () => undefined,
    });
    assert.deepEqual(done, [
      'systemctl disable --now tproxy-helper.socket tproxy-helper.service',
      'rm /u/tproxy-helper.socket',
      'rm /u/tproxy-helper.service',
      'systemctl daemon-reload',
      '/usr/bin/node /p/h --cleanup',
    ]);
  });

  it('a failing command stops the plan', async () => {
    const ran: string[] = [];
    await assert.rejects(
      executePlan(planInstall('/u', { socket: '', service: '' }), {
        writeFile: async () => undefined,
        remove: async () => undefined,
        run: async (argv) => (ran.push(argv.join(' ')), 1),
        say: () => undefined,
      }),
      /systemctl daemon-reload exited with status 1/,
    );
    assert.deepEqual(ran, ['systemctl daemon-reload']);
  });
});

describe('tproxyctl install/uninstall --dry-run', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-dry-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('install --dry-run prints the rendered files and commands and writes nothing', async () => {
    const r = recordingIo();
    const code = await main(['install', '--dry-run', '--user', '4242', '--prefix', '/opt/tproxy', '--unit-dir', dir], r.io);
    assert.equal(code, 0, r.stderr());
    const units = renderUnits(await templates(), { node: process.execPath, helper: helperBin('/opt/tproxy'), uid: 4242 });
    assert.equal(r.stdout(), formatPlan(planInstall(dir, units)));
    assert.match(r.stdout(), /^ {2}\| SocketUser=4242$/m);
    assert.match(r.stdout(), new RegExp(`^  \\| ExecStart=${process.execPath} /opt/tproxy/node_modules/\\.bin/tproxy-helper --allow-uid 4242$`, 'm'));
    assert.match(r.stdout(), /would run: systemctl enable --now tproxy-helper\.socket\n$/);
    assert.deepEqual(await readdir(dir), []);
  });

  it('install --dry-run --json lists the steps', async () => {
    const r = recordingIo();
    assert.equal(await main(['install', '--dry-run', '--json', '--unit-dir', dir], r.io), 0, r.stderr());
    const out = JSON.parse(r.stdout()) as { dryRun: boolean; steps: Array<{ kind: string }> };
    assert.equal(out.dryRun, true);
    assert.deepEqual(
      out.steps.map((s) => s.kind),
      ['write', 'write', 'run', 'run'],
    );
  });

  it('uninstall --dry-run: says when nothing is installed; otherwise prints the steps and removes nothing', async () => {
    const r1 = recordingIo();
    assert.equal(await main(['uninstall', '--dry-run', '--unit-dir', dir], r1.io), 0);
    assert.match(r1.stdout(), /not installed/);
    await writeFile(join(dir, 'tproxy-helper.socket'), 'x');
    const r2 = recordingIo();
    assert.equal(await main(['uninstall', '--dry-run', '--unit-dir', dir], r2.io), 0, r2.stderr());
    assert.match(r2.stdout(), /^would run: systemctl disable --now tproxy-helper\.socket tproxy-helper\.service/);
    assert.match(r2.stdout(), /would remove .*tproxy-helper\.service\n/);
    assert.match(r2.stdout(), /tproxy-helper --cleanup\n$/);
    assert.deepEqual(await readdir(dir), ['tproxy-helper.socket']);
  });

  it('both commands are in the command list', async () => {
    const r = recordingIo();
    assert.equal(await main(['--help'], r.io), 0);
    assert.match(r.stdout(), /^ {2}install +Install tproxy-helper/m);
    assert.match(r.stdout(), /^ {2}uninstall +Stop and remove/m);
  });
});
