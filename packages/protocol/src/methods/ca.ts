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
});

export const caGet = defineMethod({
  method: 'ca.get',
  summary: 'The CA certificate, its fingerprint and whether it is installed',
  params: CaGetParamsSchema,
  result: CaGetResultSchema,
  access: 'read',
});

export type CaGetResult = z.infer<typeof CaGetResultSchema>;
