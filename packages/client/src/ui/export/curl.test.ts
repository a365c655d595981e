import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import type { Exchange } from '@tproxy/protocol';
import { sampleExchange } from '../../test/fixtures.js';
import { shellQuote, toCurl } from './curl.js';

/**
 * Runs the generated command in bash with `curl` replaced by a function that prints each argument
 * NUL-terminated (and stdin after `@-`), so the test sees exactly the argv curl would get.
 */
function argvOf(command: string): { args: string[]; stdin: Buffer } {
  const script = `curl() { for a in "$@"; do printf '%s\\0' "$a"; done; printf '\\0STDIN\\0'; if [[ " $* " == *" @- "* ]]; then cat; fi; }\n${command}`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'buffer' });
  assert.equal(r.status, 0, r.stderr.toString());
  const marker = r.stdout.indexOf('\0STDIN\0');
  const args = r.stdout.subarray(0, marker).toString('utf8').split('\0').slice(0, -1);
  return { args, stdin: r.stdout.subarray(marker + 7) };
}

const ex = (over: Partial<Exchange['request']>, rest: Partial<Exchange> = {}): Exchange => {
  const base = sampleExchange();
  return sampleExchange({ ...rest, request: { ...base.request, ...over } });
};

describe('toCurl', () => {
  test('a GET: URL and headers, without Host, and a comment saying the headers are as captured', () => {
    const text = toCurl(ex({ headers: [['Host', 'example.com'], ['Accept', '*/*']] }));
    assert.match(text, /^# tproxy exchange 42: headers as captured; tproxy-helper masks credential values/);
    assert.deepEqual(argvOf(text).args, ['https://example.com/index.html', '-H', 'Accept: */*']);
  });

  test('masked headers are named in the comment', () => {
    const text = toCurl(ex({ headers: [['Authorization', 'Bearer eyJh…[masked 120]'], ['Cookie', 'a=b…[masked 9]']] }));
    assert.match(text.split('\n')[0]!, /masked here: Authorization, Cookie; put the real values back/);
  });

  test('a POST body goes through --data-binary with $-quoting and survives bash byte for byte', () => {
    const body = new Uint8Array(Buffer.from('{"q":"it\'s \\\\ $HOME `id` $(id)"}\n\x01\xff', 'latin1'));
    const text = toCurl(ex({ method: 'POST', headers: [['Content-Type', 'application/json'], ['Content-Length', '40']], body: { size: body.length, captured: body.length, truncated: false } }), { body });
    assert.match(text, /--data-binary \$'/);
    const { args } = argvOf(text);
    assert.deepEqual(args.slice(0, 3), ['https://example.com/index.html', '-H', 'Content-Type: application/json']);
    assert.equal(args[3], '--data-binary');
    // Compare bytes (argv above went through UTF-8 decoding): run again printing the raw argument.
    const raw = spawnSync('bash', ['-c', `curl() { printf '%s' "$5"; }\n${text}`], { encoding: 'buffer' }).stdout;
    assert.deepEqual(new Uint8Array(raw), body);
  });

  test('other methods use -X, HEAD uses --head, gzip acceptance adds --compressed', () => {
    assert.deepEqual(argvOf(toCurl(ex({ method: 'DELETE', headers: [] }))).args, ['-X', 'DELETE', 'https://example.com/index.html']);
    assert.deepEqual(argvOf(toCurl(ex({ method: 'HEAD', headers: [] }))).args, ['--head', 'https://example.com/index.html']);
    assert.deepEqual(argvOf(toCurl(ex({ headers: [['Accept-Encoding', 'gzip, br']] }))).args, ['https://example.com/index.html', '-H', 'Accept-Encoding: gzip, br', '--compressed']);
  });

  test('an empty header value is sent as `Name;`', () => {
    assert.deepEqual(argvOf(toCurl(ex({ headers: [['X-Empty', '']] }))).args, ['https://example.com/index.html', '-H', 'X-Empty;']);
  });

  test('hostile URL, method and headers stay single arguments and put no control characters in the text', () => {
    const url = "https://evil.example/'; rm -rf ~; echo '\x1b]52;c;AAAA\x07\n$(id)";
    const method = "PO$T'\x1b[2J";
    const header: [string, string] = ['X-Evil', "a'b\"c\\d\re\x1b[31mf\u202eg"];
    const text = toCurl(ex({ method, url, headers: [header] }));
    // Nothing a terminal acts on: only printable ASCII and the newlines between arguments.
    assert.ok(/^[\x20-\x7e\n]*$/.test(text), JSON.stringify(text));
    assert.deepEqual(argvOf(text).args, ['-X', method, url, '-H', `${header[0]}: ${header[1]}`]);
  });

  test('a body with NUL bytes is piped in from printf, byte for byte', () => {
    const body = new Uint8Array([0x61, 0, 0x25, 0x5c, 0x27, 0xff, 0x0a]);
    const text = toCurl(ex({ method: 'PUT', body: { size: body.length, captured: body.length, truncated: false }, headers: [] }), { body });
    assert.match(text, /^printf '.*' \| curl /m);
    const { args, stdin } = argvOf(text);
    assert.deepEqual(args, ['-X', 'PUT', 'https://example.com/index.html', '--data-binary', '@-']);
    assert.deepEqual(new Uint8Array(stdin), body);
  });

  test('a truncated request body is flagged', () => {
    const body = new Uint8Array(Buffer.from('abc'));
    const text = toCurl(ex({ method: 'POST', body: { size: 1000, captured: 3, truncated: true } }), { body });
    assert.match(text, /# warning: the request body was 1000 bytes and only the first 3 were captured/);
  });
});

describe('shellQuote', () => {
  test('plain text in single quotes; quotes escaped; anything else ANSI-C', () => {
    assert.equal(shellQuote('abc'), "'abc'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote('a\nb'), "$'a\\x0ab'");
    assert.equal(shellQuote('é'), "$'\\xc3\\xa9'");
  });
});
