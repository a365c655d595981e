/** Turns a zod failure into the one-line message users see: `field: what is wrong; other: ...`. */
import type { z } from 'zod';

export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.').replace(/\.\[/g, '[');
      return path ? `${path}: ${issue.message}` : issue.message;
    })
    .join('; ');
}
