/**
 * What the HTTP/1.1 relay refuses in a request head that Node's parser (llhttp, strict mode)
 * accepted. llhttp already rejects conflicting Content-Length/Transfer-Encoding, repeated or
 * malformed Content-Length, Transfer-Encoding that does not end in `chunked`, malformed chunk
 * sizes, invalid header names and values (NUL, controls, obs-fold, space before the colon) and
 * bare CR/LF. Left for us: the header count (llhttp silently drops fields past its limit, so the
 * server is set to keep one more than allowed and we count), framing that means different things
 * to different hops (Transfer-Encoding on HTTP/1.0, RFC 9112 §6.1), and Host fields that could
 * route differently (two of them, RFC 9112 §3.2). Pure: takes the parsed head, returns a verdict.
 */

export interface HeadRejection {
  status: 400 | 431;
  statusMessage: string;
  /** One line for the client and the capture. */
  reason: string;
}

export interface HeadLimits {
  maxHeaderCount: number;
}

/** `rawHeaders` is Node's flat [name, value, ...] list. */
export function checkRequestHead(httpVersion: string, rawHeaders: readonly string[], limits: HeadLimits): HeadRejection | undefined {
  const count = rawHeaders.length / 2;
  if (count > limits.maxHeaderCount) {
    return { status: 431, statusMessage: 'Request Header Fields Too Large', reason: `the request has more than ${limits.maxHeaderCount} header fields` };
  }
  let hosts = 0;
  let transferEncoding = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'host') hosts++;
    else if (name === 'transfer-encoding') transferEncoding = true;
  }
  if (hosts > 1) return { status: 400, statusMessage: 'Bad Request', reason: 'the request has more than one Host header field' };
  if (transferEncoding && httpVersion !== '1.1') {
    return { status: 400, statusMessage: 'Bad Request', reason: `Transfer-Encoding in an HTTP/${httpVersion} request (its framing is ambiguous)` };
  }
  return undefined;
}

/** An upstream response head with too many fields (the agent keeps one more than allowed so we can tell). */
export function tooManyResponseHeaders(rawHeaders: readonly string[], limits: HeadLimits): string | undefined {
  return rawHeaders.length / 2 > limits.maxHeaderCount ? `the upstream response has more than ${limits.maxHeaderCount} header fields` : undefined;
}
