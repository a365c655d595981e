/**
 * The list filter typed after `/`: parse once per keystroke, match every row on each refresh. Pure.
 * Syntax (terms separated by spaces, all must match; `-` or `!` in front negates one):
 *   word            URL contains the word (case-insensitive); "two words" in double quotes
 *   host:GLOB       hostname matches GLOB (`*` any run, `?` one char); without a wildcard, contains it
 *   method:POST     method is one of a comma list (`method:GET,POST`)
 *   status:404      response status; also `4xx`, `500-599`
 *   is:error        exchange failed; also `is:in-flight`, `is:complete`
 * A key with no value yet (`status:` while typing) is ignored quietly; a malformed value is reported
 * in `errors` and ignored, so the list never goes blank because of a half-typed term.
 */
import type { Exchange } from '@tproxy/protocol';
import { splitUrl } from './url.js';

export type FilterTerm = { readonly negate: boolean } & (
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'host'; readonly pattern: RegExp }
  | { readonly kind: 'method'; readonly methods: readonly string[] }
  | { readonly kind: 'status'; readonly min: number; readonly max: number }
  | { readonly kind: 'is'; readonly what: 'error' | 'in-flight' | 'complete' }
);

export interface Filter {
  /** The text as typed. */
  readonly source: string;
  readonly terms: readonly FilterTerm[];
  /** One message per malformed term, naming it. */
  readonly errors: readonly string[];
}

export const EMPTY_FILTER: Filter = { source: '', terms: [], errors: [] };

const IS_VALUES = ['error', 'in-flight', 'complete'] as const;

/** Whitespace-separated tokens; a double-quoted run is one token (quotes removed). */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const re = /([-!]?)(?:"([^"]*)"?|(\S+))/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    tokens.push(m[2] !== undefined ? `${m[1]}${m[2]}` : `${m[1]}${m[3]}`);
  }
  return tokens;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(/[*?]/.test(glob) ? `^${body}$` : body, 'i');
}

function parseStatus(value: string): { min: number; max: number } | undefined {
  let m = /^([1-5])xx$/i.exec(value);
  if (m) return { min: Number(m[1]) * 100, max: Number(m[1]) * 100 + 99 };
  m = /^(\d{3})$/.exec(value);
  if (m) return { min: Number(m[1]), max: Number(m[1]) };
  m = /^(\d{3})-(\d{3})$/.exec(value);
  if (m && Number(m[1]) <= Number(m[2])) return { min: Number(m[1]), max: Number(m[2]) };
  return undefined;
}

export function parseFilter(source: string): Filter {
  const terms: FilterTerm[] = [];
  const errors: string[] = [];
  for (const token of tokenize(source)) {
    const negate = token.length > 1 && (token.startsWith('-') || token.startsWith('!'));
    const body = negate ? token.slice(1) : token;
    const colon = body.indexOf(':');
    const key = colon > 0 ? body.slice(0, colon).toLowerCase() : '';
    const value = colon > 0 ? body.slice(colon + 1) : '';
    if (key === 'host' || key === 'method' || key === 'status' || key === 'is') {
      if (value === '') continue;
      if (key === 'host') terms.push({ kind: 'host', pattern: globToRegExp(value.toLowerCase()), negate });
      else if (key === 'method') {
        terms.push({ kind: 'method', methods: value.split(',').filter(Boolean).map((m) => m.toUpperCase()), negate });
      } else if (key === 'status') {
        const range = parseStatus(value);
        if (range) terms.push({ kind: 'status', ...range, negate });
        else errors.push(`status:${value}: expected a code (404), a class (4xx) or a range (500-599)`);
      } else {
        const what = IS_VALUES.find((v) => v === value.toLowerCase());
        if (what) terms.push({ kind: 'is', what, negate });
        else errors.push(`is:${value}: expected one of ${IS_VALUES.join(', ')}`);
      }
    } else {
      terms.push({ kind: 'text', text: body.toLowerCase(), negate });
    }
  }
  return { source, terms, errors };
}

function termMatches(term: FilterTerm, ex: Exchange): boolean {
  switch (term.kind) {
    case 'text':
      return ex.request.url.toLowerCase().includes(term.text);
    case 'host':
      return term.pattern.test(splitUrl(ex.request.url).hostname);
    case 'method':
      return term.methods.includes(ex.request.method.toUpperCase());
    case 'status':
      return ex.response !== undefined && ex.response.status >= term.min && ex.response.status <= term.max;
    case 'is':
      return ex.state === term.what;
  }
}

export function matchesFilter(filter: Filter, ex: Exchange): boolean {
  return filter.terms.every((term) => termMatches(term, ex) !== term.negate);
}

/** True when the filter narrows anything (terms present). */
export function isActive(filter: Filter): boolean {
  return filter.terms.length > 0;
}
