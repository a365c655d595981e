/**
 * Notifications the helper sends to subscribed connections. Each carries a full immutable snapshot
 * of the exchange, so a client that missed one notification is never left with a half-updated copy.
 */
import { z } from 'zod';
import { ExchangeSchema } from './model/exchange.js';

export const ExchangeNotificationParamsSchema = z.object({ exchange: ExchangeSchema });

export const notifications = {
  /** The request head arrived from the client. */
  exchangeStarted: { method: 'exchange.started', params: ExchangeNotificationParamsSchema },
  /** Something visible changed mid-flight (response head arrived). */
  exchangeUpdated: { method: 'exchange.updated', params: ExchangeNotificationParamsSchema },
  /** The exchange ended: complete or error. */
  exchangeCompleted: { method: 'exchange.completed', params: ExchangeNotificationParamsSchema },
} as const;

export type ExchangeNotificationParams = z.infer<typeof ExchangeNotificationParamsSchema>;
export type NotificationName = (typeof notifications)[keyof typeof notifications]['method'];
