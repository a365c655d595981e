/** `ca.*`: the local CA that signs the leaf certificates clients see. */
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
  /** Whether the CA is currently in the OS trust store. */
  installed: z.boolean(),
  /** The trust-store file, while installed. */
  trustStorePath: z.string().optional(),
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
  summary: 'The CA certificate, its fingerprint and whether it is installed',
  params: CaGetParamsSchema,
  result: CaGetResultSchema,
  access: 'read',
});

export type CaGetResult = z.infer<typeof CaGetResultSchema>;
