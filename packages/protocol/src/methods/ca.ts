/**
 * `ca.*`: the local CA that signs the leaf certificates clients see, and where it is trusted.
 * Two kinds of OS trust-store entry exist: a capture-scoped one (capture.start adds it, capture.stop
 * removes it) and a persistent one (`ca.install`, kept across captures and helper restarts until
 * `ca.uninstall`). `ca.rotate` replaces the CA and every entry made for it. Users' NSS databases
 * (Chromium, Firefox) are not the helper's: they live in home directories a hardened root unit
 * cannot write (ProtectHome=), and need no privilege, so `tproxyctl ca install --nss` adds the CA
 * from `ca.get`'s `pem` as the user whose database it is.
 */
import { z } from 'zod';
import { defineMethod } from './descriptor.js';

export const CaGetParamsSchema = z.object({}).strict();

export const CaGetResultSchema = z.object({
  /** The CA certificate, PEM. Never the key: the key does not leave the helper's state dir. */
  pem: z.string(),
  /** SHA-256 of the DER certificate, colon-separated upper-case hex (as `openssl x509 -fingerprint -sha256`). */
  fingerprintSha256: z.string(),
  /** Subject common name. */
  subject: z.string(),
  /** Expiry, ISO 8601. */
  notAfter: z.string(),
  /** Whether the CA is currently in the OS trust store (persistently, or for the running capture). */
  installed: z.boolean(),
  /** The trust-store file, while installed (the persistent one when there is one). */
  trustStorePath: z.string().optional(),
  /**
   * Whether the OS trust-store entry is persistent (`ca.install`): it stays after capture stops and
   * across helper restarts until `ca.uninstall`. False while only a running capture installed it.
   * Absent from helpers older than `ca.install`.
   */
  persistent: z.boolean().optional(),
  /**
   * Our CA certificate alone, PEM, mode 0644 in the helper's runtime directory (next to the
   * socket). The public certificate only, never the key. For runtimes that ADD extra roots to
   * their own (Node's NODE_EXTRA_CA_CERTS).
   */
  caPath: z.string(),
  /**
   * A PEM bundle, mode 0644 next to `caPath`: the distribution's system roots as installed
   * (de-duplicated, without our CA) followed by our CA. For runtimes whose variable REPLACES their
   * roots (OpenSSL's SSL_CERT_FILE, requests, curl, git). Regenerated when the CA or the system
   * bundle changes; only our CA when the host has no system bundle.
   */
  bundlePath: z.string(),
  /**
   * Environment that makes runtimes with their own trust stores trust us: SSL_CERT_FILE,
   * REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and GIT_SSL_CAINFO name `bundlePath`;
   * NODE_EXTRA_CA_CERTS names `caPath`. `tproxyctl env` prints it as shell exports.
   */
  env: z.record(z.string(), z.string()),
});

export const caGet = defineMethod({
  method: 'ca.get',
  summary: 'The CA certificate, its fingerprint and where it is installed',
  params: CaGetParamsSchema,
  result: CaGetResultSchema,
  access: 'read',
});

export const CaInstallParamsSchema = z.object({}).strict();

export const caInstall = defineMethod({
  method: 'ca.install',
  summary: 'Install the CA persistently into the OS trust store',
  params: CaInstallParamsSchema,
  result: CaGetResultSchema,
  access: 'write',
});

export const CaUninstallParamsSchema = z.object({}).strict();

export const caUninstall = defineMethod({
  method: 'ca.uninstall',
  summary: 'Remove the persistent CA install from the OS trust store',
  params: CaUninstallParamsSchema,
  result: CaGetResultSchema,
  access: 'write',
});

export const CaRotateParamsSchema = z.object({}).strict();

export const CaRotateResultSchema = CaGetResultSchema.extend({
  /** SHA-256 fingerprint of the CA that was replaced. It is no longer trusted anywhere the helper put it. */
  previousFingerprintSha256: z.string(),
});

export const caRotate = defineMethod({
  method: 'ca.rotate',
  summary: 'Replace the CA with a new one and move every trust entry to it (capture must be stopped)',
  params: CaRotateParamsSchema,
  result: CaRotateResultSchema,
  access: 'write',
});

export type CaGetResult = z.infer<typeof CaGetResultSchema>;
export type CaInstallParams = z.infer<typeof CaInstallParamsSchema>;
export type CaUninstallParams = z.infer<typeof CaUninstallParamsSchema>;
export type CaRotateResult = z.infer<typeof CaRotateResultSchema>;
