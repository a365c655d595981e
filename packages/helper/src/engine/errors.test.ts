import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExchangeErrorKind } from '@tproxy/protocol';
import { classifyUpstreamError, type Where } from './errors.js';
import { UpstreamTlsError } from './upstream.js';

const WHERE: Where = { address: '203.0.113.7', port: 443, serverName: 'api.test' };
const DEST = 'api.test (203.0.113.7:443)';

/** An error shaped the way Node raises it: message, code, and syscall where Node sets one. */
function nodeError(code: string | undefined, message: string, syscall?: string): Error {
  const err = new Error(message) as NodeJS.ErrnoException;
  if (code !== undefined) err.code = code;
  if (syscall !== undefined) err.syscall = syscall;
  return err;
}

describe('classifyUpstreamError', () => {
  const connect: [code: string, words: string][] = [
    ['ECONNREFUSED', 'connection refused'],
    ['ETIMEDOUT', 'connection timed out'],
    ['ENETUNREACH', 'network unreachable'],
    ['EHOSTUNREACH', 'host unreachable'],
    ['EADDRNOTAVAIL', 'address not available'],
    ['EPERM', 'connect not permitted (is the helper missing CAP_NET_ADMIN?)'],
    ['EACCES', 'connect not permitted'],
  ];
  for (const [code, words] of connect) {
    it(`${code} from connect → upstream-connect`, () => {
      assert.deepEqual(classifyUpstreamError(nodeError(code, `connect ${code} 203.0.113.7:443`, 'connect'), WHERE, false), {
        kind: 'upstream-connect',
        code,
        message: `cannot connect to ${DEST}: ${words} (${code})`,
      });
    });
  }

  it('a connect code from the native connector (no syscall) is still a connect failure', () => {
    assert.equal(classifyUpstreamError(nodeError('ECONNREFUSED', 'connectMarked: Connection refused'), WHERE, false).kind, 'upstream-connect');
  });

  it('connect codes raised by read/write mid-exchange are not connect failures', () => {
    const err = classifyUpstreamError(nodeError('ETIMEDOUT', 'read ETIMEDOUT', 'read'), WHERE, true);
    assert.equal(err.kind, 'upstream-aborted');
    assert.equal(err.code, 'ETIMEDOUT');
  });

  const cert: [code: string, words: string][] = [
    ['DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in chain'],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'certificate not issued by a trusted CA'],
    ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'certificate issuer is not trusted'],
    ['UNABLE_TO_GET_ISSUER_CERT', 'certificate issuer is not trusted'],
    ['CERT_HAS_EXPIRED', 'certificate has expired'],
    ['CERT_NOT_YET_VALID', 'certificate is not yet valid'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', 'certificate does not match the server name'],
    ['CERT_REVOKED', 'certificate revoked'],
    ['CERT_SIGNATURE_FAILURE', 'certificate signature invalid'],
    ['INVALID_CA', 'invalid CA certificate in chain'],
  ];
  for (const [code, words] of cert) {
    it(`${code} → upstream-tls with plain words and the first line of Node's reason`, () => {
      assert.deepEqual(classifyUpstreamError(nodeError(code, `${code.toLowerCase()} detail\nsecond line`), WHERE, false), {
        kind: 'upstream-tls',
        code,
        message: `upstream certificate rejected for ${DEST}: ${words} (${code.toLowerCase()} detail)`,
      });
    });
  }

  it("drops Node's reason when it only repeats the plain words", () => {
    const got = classifyUpstreamError(nodeError('CERT_HAS_EXPIRED', 'Certificate has expired'), WHERE, false);
    assert.equal(got.message, `upstream certificate rejected for ${DEST}: certificate has expired`);
  });

  const ssl = ['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'ERR_TLS_HANDSHAKE_TIMEOUT'];
  for (const code of ssl) {
    it(`${code} → upstream-tls`, () => {
      const message = 'C0B7:error:0A00010B:SSL routines:ssl3_get_record:wrong version number\n  at stack';
      assert.deepEqual(classifyUpstreamError(nodeError(code, message), WHERE, false), {
        kind: 'upstream-tls',
        code,
        message: `TLS with ${DEST} failed: C0B7:error:0A00010B:SSL routines:ssl3_get_record:wrong version number`,
      });
    });
  }

  it('an UpstreamTlsError with a code of its own → upstream-tls', () => {
    const err = classifyUpstreamError(new UpstreamTlsError('handshake went wrong', 'EPROTO'), WHERE, false);
    assert.deepEqual(err, { kind: 'upstream-tls', code: 'EPROTO', message: `TLS with ${DEST} failed: handshake went wrong` });
  });

  it(
    'the upstream handshake timeout (UpstreamTlsError) → upstream-tls, even with a connect-like code',
    () => {
      const err = new UpstreamTlsError('TLS handshake with 203.0.113.7:443 timed out', 'ETIMEDOUT');
      const got = classifyUpstreamError(err, WHERE, false);
      assert.equal(got.kind, 'upstream-tls');
      assert.match(got.message, /TLS handshake with 203\.0\.113\.7:443 timed out/);
    },
  );

  for (const code of ['HPE_INVALID_CONSTANT', 'HPE_INVALID_HEADER_TOKEN', 'HPE_UNEXPECTED_CONTENT_LENGTH', 'HPE_INVALID_CHUNK_SIZE']) {
    it(`${code} → upstream-protocol`, () => {
      assert.deepEqual(classifyUpstreamError(nodeError(code, 'Parse Error: Expected HTTP/'), WHERE, true), {
        kind: 'upstream-protocol',
        code,
        message: `invalid HTTP from ${DEST}: Parse Error: Expected HTTP/`,
      });
    });
  }

  const aborted: [what: string, err: Error, started: boolean, code: string | undefined][] = [
    ['ECONNRESET on read', nodeError('ECONNRESET', 'read ECONNRESET', 'read'), false, 'ECONNRESET'],
    ['ECONNRESET "socket hang up" before any response', nodeError('ECONNRESET', 'socket hang up'), false, 'ECONNRESET'],
    ['EPIPE on write', nodeError('EPIPE', 'write EPIPE', 'write'), false, 'EPIPE'],
    ['a code-less close once the response started', new Error('upstream closed before the response body ended'), true, undefined],
  ];
  for (const [what, err, started, code] of aborted) {
    it(`${what} → upstream-aborted`, () => {
      const got = classifyUpstreamError(err, WHERE, started);
      assert.equal(got.kind, 'upstream-aborted');
      assert.equal(got.code, code);
      assert.equal('code' in got, code !== undefined, 'no code key when there is no code');
      assert.equal(got.message, `${DEST} closed the connection mid-exchange: ${err.message}`);
    });
  }

  it('anything else before a response → upstream-connect without a code', () => {
    assert.deepEqual(classifyUpstreamError(new Error('something odd'), WHERE, false), { kind: 'upstream-connect', message: `upstream ${DEST} failed: something odd` });
    assert.deepEqual(classifyUpstreamError('a string', WHERE, false), { kind: 'upstream-connect', message: `upstream ${DEST} failed: a string` });
    assert.equal(classifyUpstreamError(null, WHERE, false).kind, 'upstream-connect');
  });

  it('names the destination: brackets IPv6, omits the name for IP-only clients', () => {
    const err = nodeError('ECONNREFUSED', 'connect ECONNREFUSED', 'connect');
    assert.equal(classifyUpstreamError(err, { address: 'fd00::2', port: 8443, serverName: undefined }, false).message, 'cannot connect to [fd00::2]:8443: connection refused (ECONNREFUSED)');
    assert.equal(classifyUpstreamError(err, { address: '198.18.0.2', port: 443, serverName: undefined }, false).message, 'cannot connect to 198.18.0.2:443: connection refused (ECONNREFUSED)');
  });

  it('every result is one line and a known kind', () => {
    const kinds = new Set<ExchangeErrorKind>(['upstream-connect', 'upstream-tls', 'upstream-protocol', 'upstream-aborted', 'client-aborted', 'client-protocol']);
    for (const code of [...connect.map(([c]) => c), ...cert.map(([c]) => c), ...ssl, 'HPE_X', 'ECONNRESET', undefined]) {
      const got = classifyUpstreamError(nodeError(code, 'line one\nline two\nline three'), WHERE, false);
      assert.ok(kinds.has(got.kind));
      assert.ok(!got.message.includes('\n'), got.message);
    }
  });
});
