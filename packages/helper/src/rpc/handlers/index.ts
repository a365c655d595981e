/** The route table: every method the helper serves. A method missing here is "method not found". */
import type { Route } from '../dispatcher.js';
import { caRoutes } from './ca.js';
import { captureRoutes } from './capture.js';
import { exchangeRoutes } from './exchanges.js';
import { helperRoutes } from './helper.js';
import { runRoutes } from './run.js';

export const routes: readonly Route[] = [...helperRoutes, ...captureRoutes, ...runRoutes, ...exchangeRoutes, ...caRoutes];
