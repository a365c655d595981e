/** `exchanges.*`: read the bounded capture buffer and follow it live. */
import { z } from 'zod';
import { ExchangeFilterSchema } from '../filter.js';
import { ExchangeDetailSchema, ExchangeSchema } from '../model/exchange.js';
import { defineMethod } from './descriptor.js';

export const ExchangesListParamsSchema = z
  .object({
    /** At most this many exchanges (1..1000). Default 100. */
    limit: z.number().int().min(1, 'limit must be between 1 and 1000').max(1000, 'limit must be between 1 and 1000').default(100),
    /** Only exchanges with an id lower than this: pass the previous page's `nextCursor`. */
    cursor: z.number().int().positive('cursor must be a positive id').optional(),
    /**
     * Only exchanges matching this filter. A filtered page examines at most EXCHANGES_LIST_SCAN_MAX
     * buffered exchanges; when it stops there, it may hold fewer than `limit` (even none) and still
     * carry a `nextCursor`: keep paging until `nextCursor` is absent.
     */
    filter: ExchangeFilterSchema.optional(),
  })
  .strict();

/** Most buffered exchanges one filtered `exchanges.list` call examines, so one call's cost is bounded. */
export const EXCHANGES_LIST_SCAN_MAX = 5000;

export const ExchangesListResultSchema = z.object({
  /** Newest first. */
  exchanges: z.array(ExchangeSchema),
  /** Cursor for the next (older) page; absent when this page reached the oldest buffered exchange. */
  nextCursor: z.number().int().optional(),
});

export const ExchangesGetParamsSchema = z.object({ id: z.number().int().positive('id must be a positive integer') }).strict();

export const ExchangesSubscribeParamsSchema = z
  .object({
    /**
     * Only notifications whose exchange snapshot matches this filter are sent on this connection.
     * Each notification is judged on the snapshot it carries: with a `status` range, an exchange
     * matches only once its response head arrived, so the first notification about it may be
     * `exchange.updated` or `exchange.completed` (treat an unknown id as new). Subscribing again
     * replaces the filter; omitting it subscribes to everything. `exchanges.cleared` is always sent.
     */
    filter: ExchangeFilterSchema.optional(),
  })
  .strict();
export const ExchangesSubscribeResultSchema = z.object({
  /** True while this connection receives `exchange.*` notifications. */
  subscribed: z.boolean(),
});
export const ExchangesUnsubscribeParamsSchema = z.object({}).strict();

export const ExchangesClearParamsSchema = z.object({}).strict();
export const ExchangesClearResultSchema = z.object({
  /** How many exchanges the buffer held and no longer does. */
  removed: z.number().int().nonnegative(),
});

export const ExportFormatSchema = z.enum(['har', 'jsonl'], { message: "format must be 'har' or 'jsonl'" });

export const ExchangesExportParamsSchema = z
  .object({
    /**
     * `har`: one HAR 1.2 document (`{"log": {...}}`), entries oldest first. `jsonl`: one JSON object
     * per line, shaped like the `exchanges.get` result (bodies base64; without bodies only `exchange`).
     * HAR bodies are shown with their Content-Encoding undone; JSON Lines keeps the wire bytes.
     */
    format: ExportFormatSchema,
    /** Only exchanges matching this filter. */
    filter: ExchangeFilterSchema.optional(),
    /** Include the captured bodies. Default true. */
    includeBodies: z.boolean().default(true),
  })
  .strict();

export const ExchangesExportResultSchema = z.object({
  /** The id every `exchanges.exportChunk` notification of this export carried. */
  exportId: z.number().int().positive(),
  /** Exchanges written (those evicted while the export ran are skipped, not counted). */
  count: z.number().int().nonnegative(),
  /** UTF-8 bytes of the whole document, the sum over all chunks' `data`. */
  bytes: z.number().int().nonnegative(),
  /** Chunks sent; the last chunk's `seq` is `chunks - 1`. */
  chunks: z.number().int().nonnegative(),
});

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

export const exchangesClear = defineMethod({
  method: 'exchanges.clear',
  summary: 'Empty the exchange buffer; in-flight exchanges go on but are no longer kept',
  params: ExchangesClearParamsSchema,
  result: ExchangesClearResultSchema,
  access: 'write',
});

export const exchangesExport = defineMethod({
  method: 'exchanges.export',
  summary: 'Stream buffered exchanges as HAR 1.2 or JSON Lines in exchanges.exportChunk notifications, then answer with totals',
  params: ExchangesExportParamsSchema,
  result: ExchangesExportResultSchema,
  access: 'read',
});

export type ExchangesListParams = z.input<typeof ExchangesListParamsSchema>;
export type ExchangesListResult = z.infer<typeof ExchangesListResultSchema>;
export type ExchangesGetParams = z.infer<typeof ExchangesGetParamsSchema>;
export type ExchangesSubscribeParams = z.input<typeof ExchangesSubscribeParamsSchema>;
export type ExchangesClearResult = z.infer<typeof ExchangesClearResultSchema>;
export type ExportFormat = z.infer<typeof ExportFormatSchema>;
export type ExchangesExportParams = z.input<typeof ExchangesExportParamsSchema>;
export type ExchangesExportResult = z.infer<typeof ExchangesExportResultSchema>;
