/** `exchanges.*`: read the bounded capture buffer and follow it live. */
import { z } from 'zod';
import { ExchangeDetailSchema, ExchangeSchema } from '../model/exchange.js';
import { defineMethod } from './descriptor.js';

export const ExchangesListParamsSchema = z
  .object({
    /** At most this many exchanges (1..1000). Default 100. */
    limit: z.number().int().min(1, 'limit must be between 1 and 1000').max(1000, 'limit must be between 1 and 1000').default(100),
    /** Only exchanges with an id lower than this: pass the previous page's `nextCursor`. */
    cursor: z.number().int().positive('cursor must be a positive id').optional(),
  })
  .strict();

export const ExchangesListResultSchema = z.object({
  /** Newest first. */
  exchanges: z.array(ExchangeSchema),
  /** Cursor for the next (older) page; absent when this page reached the oldest buffered exchange. */
  nextCursor: z.number().int().optional(),
});

export const ExchangesGetParamsSchema = z.object({ id: z.number().int().positive('id must be a positive integer') }).strict();

export const ExchangesSubscribeParamsSchema = z.object({}).strict();
export const ExchangesSubscribeResultSchema = z.object({
  /** True while this connection receives `exchange.*` notifications. */
  subscribed: z.boolean(),
});
export const ExchangesUnsubscribeParamsSchema = z.object({}).strict();

export const exchangesList = defineMethod({
  method: 'exchanges.list',
  summary: 'Buffered exchanges, newest first, paged by cursor',
  params: ExchangesListParamsSchema,
  result: ExchangesListResultSchema,
  access: 'read',
});

export const exchangesGet = defineMethod({
  method: 'exchanges.get',
  summary: 'One exchange with its captured bodies (base64)',
  params: ExchangesGetParamsSchema,
  result: ExchangeDetailSchema,
  access: 'read',
});

export const exchangesSubscribe = defineMethod({
  method: 'exchanges.subscribe',
  summary: 'Receive exchange.started / exchange.updated / exchange.completed notifications on this connection',
  params: ExchangesSubscribeParamsSchema,
  result: ExchangesSubscribeResultSchema,
  access: 'read',
});

export const exchangesUnsubscribe = defineMethod({
  method: 'exchanges.unsubscribe',
  summary: 'Stop exchange notifications on this connection',
  params: ExchangesUnsubscribeParamsSchema,
  result: ExchangesSubscribeResultSchema,
  access: 'read',
});

export type ExchangesListParams = z.input<typeof ExchangesListParamsSchema>;
export type ExchangesListResult = z.infer<typeof ExchangesListResultSchema>;
export type ExchangesGetParams = z.infer<typeof ExchangesGetParamsSchema>;
