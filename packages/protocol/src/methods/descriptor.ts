/**
 * The shape of a method descriptor: the one place a method's name, parameter schema, result schema
 * and required permission are written down. The helper routes by it; the client types calls by it.
 */
import type { z } from 'zod';

/** `read` methods observe; `write` methods change host state (rules, trust store, buffer). */
export type Access = 'read' | 'write';

export interface MethodDescriptor<P extends z.ZodType = z.ZodType, R extends z.ZodType = z.ZodType> {
  readonly method: string;
  readonly params: P;
  readonly result: R;
  readonly access: Access;
  /** One line for docs and `--help`. */
  readonly summary: string;
}

export function defineMethod<P extends z.ZodType, R extends z.ZodType>(d: MethodDescriptor<P, R>): MethodDescriptor<P, R> {
  return d;
}

export type ParamsOf<D> = D extends MethodDescriptor<infer P, z.ZodType> ? z.input<P> : never;
export type ResultOf<D> = D extends MethodDescriptor<z.ZodType, infer R> ? z.infer<R> : never;
