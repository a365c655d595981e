/**
 * Notifications the helper sends to subscribed connections. Each carries a full immutable snapshot
 * of the exchange, so a client that missed one notification is never left with a half-updated copy.
 */
import { z } from 'zod';
import { CaptureStatusSchema } from './methods/capture.js';
import { ExchangeSchema } from './model/exchange.js';

export const ExchangeNotificationParamsSchema = z.object({ exchange: ExchangeSchema });

export const ExchangesClearedParamsSchema = z.object({
  /** How many exchanges `exchanges.clear` removed from the buffer. */
  removed: z.number().int().nonnegative(),
  /** Every exchange with an id up to this one is gone; later notifications about them are not sent. */
  throughId: z.number().int().nonnegative(),
});

export const ExportChunkParamsSchema = z.object({
  /** The export this chunk belongs to; the `exchanges.export` result names it too. */
  exportId: z.number().int().positive(),
  /** 0, 1, 2, ... in order; a gap means the stream is broken. */
  seq: z.number().int().nonnegative(),
  /** The next piece of the document (concatenate all pieces in `seq` order). */
  data: z.string(),
});

export const CaptureStatusChangedParamsSchema = z.object({
  /** The status as `capture.status` would return it now. */
  status: CaptureStatusSchema,
});

export const notifications = {
  /** The request head arrived from the client. */
  exchangeStarted: { method: 'exchange.started', params: ExchangeNotificationParamsSchema },
  /** Something visible changed mid-flight (response head arrived). */
  exchangeUpdated: { method: 'exchange.updated', params: ExchangeNotificationParamsSchema },
  /** The exchange ended: complete or error. */
  exchangeCompleted: { method: 'exchange.completed', params: ExchangeNotificationParamsSchema },
  /** `exchanges.clear` emptied the buffer (sent to every subscriber, whatever its filter). */
  exchangesCleared: { method: 'exchanges.cleared', params: ExchangesClearedParamsSchema },
  /**
   * Capture started or stopped, or its steering was lost or restored (someone flushed our table,
   * rule or route, or the fail-open refresh failed): sent to every subscriber, so a dashboard or a
   * script notices "interception lost" without polling.
   */
  captureStatusChanged: { method: 'capture.statusChanged', params: CaptureStatusChangedParamsSchema },
  /** One piece of an `exchanges.export` document, sent only to the connection that asked for it. */
  exportChunk: { method: 'exchanges.exportChunk', params: ExportChunkParamsSchema },
} as const;

export type ExchangeNotificationParams = z.infer<typeof ExchangeNotificationParamsSchema>;
export type ExchangesClearedParams = z.infer<typeof ExchangesClearedParamsSchema>;
export type CaptureStatusChangedParams = z.infer<typeof CaptureStatusChangedParamsSchema>;
export type ExportChunkParams = z.infer<typeof ExportChunkParamsSchema>;
export type NotificationName = (typeof notifications)[keyof typeof notifications]['method'];
