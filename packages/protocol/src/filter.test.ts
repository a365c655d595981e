import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExchangeFilterSchema, globMatch, isEmptyFilter, matchesFilter, urlHost, type ExchangeFilter } from './filter.js';
import type { Exchange } from './model/exchange.js';
import { formatZodError } from './validation.js';

function exchange(over: { url?: string; method?: string; status?: number; sni?: string } = {}): Exchange {
  return {
    id: 1,
    state: over.status === undefined ? 'in-flight' : 'complete',
    client: { address: '198.18.0.1', port: 40000 },
    server: { address: '198.18.0.2', port: 443 },
    tls: over.sni === undefined ? {} : { sni: over.sni },
    request: { method: over.method ?? 'GET', url: over.url ?? 'https://api.example.com/v1/items?q=1', httpVersion: '1.1', headers: [], body: { size: 0, captured: 0, truncated: false } },
    ...(over.status === undefined
      ? {}
      : { response: { status: over.status, statusMessage: '', httpVersion: '1.1', headers: [], body: { size: 0, captured: 0, truncated: false } } }),
    timing: { startedAt: 0 },
  };
}

function filterError(input: unknown): string {
  const r = ExchangeFilterSchema.safeParse(input);
  assert.equal(r.success, false, `expected ${JSON.stringify(input)} to be rejected`);
  return formatZodError(r.error!);
}

describe('globMatch', () => {
  it('matches * and ? over the whole string, case-insensitively', () => {
    assert.ok(globMatch('*.example.com', 'api.example.com'));
    assert.ok(globMatch('*.example.com', 'a.b.example.com'), '* crosses dots');
    assert.ok(!globMatch('*.example.com', 'example.com'));
    assert.ok(!globMatch('*.example.com', 'api.example.com.evil'), 'anchored at the end');
    assert.ok(!globMatch('example', 'example.com'), 'anchored at both ends');
    assert.ok(globMatch('API.Example.COM', 'api.example.com'));
    assert.ok(globMatch('api?.example.com', 'api2.example.com'));
    assert.ok(!globMatch('api?.example.com', 'api.example.com'), '? is exactly one character');
    assert.ok(globMatch('*', ''));
    assert.ok(globMatch('*', 'anything'));
    assert.ok(!globMatch('', 'x'));
    assert.ok(globMatch('**a**', 'bab'));
    assert.ok(globMatch('a*b*c', 'aXXbYYc'));
    assert.ok(!globMatch('a*b*c', 'aXXbYY'));
    assert.ok(globMatch('[::1]', '[::1]'), 'brackets are literal, not classes');
    assert.ok(!globMatch('[ab]', 'a'));
  });

  it('stays fast on patterns that make backtracking regexes explode', () => {
    const text = 'a'.repeat(300);
    const glob = `${'*a'.repeat(100)}b`;
    const t0 = performance.now();
    assert.equal(globMatch(glob, text), false);
    assert.ok(performance.now() - t0 < 500, 'bounded by len(glob) × len(text)');
  });
});

describe('urlHost', () => {
  it('takes the host without userinfo, port or brackets', () => {
    assert.equal(urlHost('https://API.example.com:8443/x?y#z'), 'api.example.com');
    assert.equal(urlHost('https://user:pw@example.com/'), 'example.com');
    assert.equal(urlHost('https://[fd00::2]:443/'), 'fd00::2');
    assert.equal(urlHost('https://198.18.0.2'), '198.18.0.2');
    assert.equal(urlHost('https://h?x=/'), 'h');
    assert.equal(urlHost('/relative'), '');
  });
});

describe('matchesFilter', () => {
  it('matches everything without a filter or with an empty one', () => {
    assert.ok(matchesFilter(exchange(), undefined));
    assert.ok(matchesFilter(exchange(), {}));
    assert.ok(isEmptyFilter({}) && isEmptyFilter(undefined) && !isEmptyFilter({ text: 'x' }));
  });

  it('host glob against the URL host, falling back to SNI for an URL without one', () => {
    assert.ok(matchesFilter(exchange(), { host: '*.example.com' }));
    assert.ok(!matchesFilter(exchange(), { host: 'example.com' }));
    assert.ok(matchesFilter(exchange({ url: 'https://[fd00::2]:443/' }), { host: 'fd00::?' }));
    assert.ok(matchesFilter(exchange({ url: '*', sni: 'Upstream.Test' }), { host: 'upstream.test' }));
  });

  it('method: one or any of a list, case-insensitive', () => {
    assert.ok(matchesFilter(exchange({ method: 'POST' }), { method: 'post' }));
    assert.ok(!matchesFilter(exchange({ method: 'GET' }), { method: 'POST' }));
    assert.ok(matchesFilter(exchange({ method: 'PUT' }), { method: ['POST', 'PUT'] }));
  });

  it('status range is inclusive; no response never matches a range', () => {
    const f: ExchangeFilter = { status: { min: 400, max: 499 } };
    assert.ok(matchesFilter(exchange({ status: 400 }), f));
    assert.ok(matchesFilter(exchange({ status: 499 }), f));
    assert.ok(!matchesFilter(exchange({ status: 500 }), f));
    assert.ok(!matchesFilter(exchange({ status: 399 }), f));
    assert.ok(!matchesFilter(exchange(), f), 'in flight, status unknown');
    assert.ok(matchesFilter(exchange({ status: 503 }), { status: { min: 500 } }));
    assert.ok(matchesFilter(exchange({ status: 204 }), { status: { max: 299 } }));
    assert.ok(!matchesFilter(exchange(), { status: {} }), 'even an open range needs a response');
  });

  it('text is a case-insensitive substring of the URL', () => {
    assert.ok(matchesFilter(exchange(), { text: '/V1/ITEMS?q' }));
    assert.ok(!matchesFilter(exchange(), { text: 'nope' }));
  });

  it('every condition must hold', () => {
    const f: ExchangeFilter = { host: 'api.*', method: 'GET', status: { min: 200, max: 299 }, text: 'items' };
    assert.ok(matchesFilter(exchange({ status: 200 }), f));
    assert.ok(!matchesFilter(exchange({ status: 200, method: 'POST' }), f));
    assert.ok(!matchesFilter(exchange({ status: 200, url: 'https://api.example.com/other' }), f));
  });
});

describe('ExchangeFilterSchema', () => {
  it('accepts every field', () => {
    const f = ExchangeFilterSchema.parse({ host: '*.x', method: ['GET', 'post'], status: { min: 100, max: 999 }, text: 'a' });
    assert.deepEqual(f.method, ['GET', 'post']);
  });

  it('names the bad field with what to do', () => {
    assert.match(filterError({ status: { min: 500, max: 400 } }), /^status: status.min must not be greater than status.max/);
    assert.match(filterError({ status: { min: 42 } }), /^status.min: status bounds must be between 100 and 999/);
    assert.match(filterError({ status: { min: 200.5 } }), /^status.min: status bounds must be integers/);
    assert.match(filterError({ status: { low: 1 } }), /low/);
    assert.match(filterError({ method: 'GET POST' }), /^method: /);
    assert.match(filterError({ method: [] }), /^method: .*not be empty/);
    assert.match(filterError({ host: '' }), /^host: host must not be empty/);
    assert.match(filterError({ host: 'x'.repeat(301) }), /^host: host must be at most 300/);
    assert.match(filterError({ text: '' }), /^text: text must not be empty/);
    assert.match(filterError({ hots: 'x' }), /hots/);
  });
});
