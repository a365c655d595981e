// Runs inside the client namespace (started by bench.ts): N sequential HTTPS requests to
// 198.18.0.2:443, each on a new TLS connection with its own SNI name. With --prefix a fresh name
// per connection ("<prefix>-<i>.bench.test", never seen before: the helper must mint a leaf); with
// --same one name for all (the helper's leaf cache is warm after the first). Prints one JSON line:
// per-request milliseconds (TCP connect -> response fully read) and the issuer CN it saw.
// With --resume (and --same) each connection offers the TLS session of the one before (tickets),
// and the output also counts how many were resumed.
// Certificates are not verified (rejectUnauthorized: false): the issuer is reported instead, so
// bench.ts can assert that a "tproxy" run was intercepted and a "direct" one was not.
import tls from 'node:tls';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const count = Number(opt('count', '20'));
const prefix = opt('prefix', `n${process.pid}`);
const same = args.includes('--same');
const resume = args.includes('--resume');
let session;
const host = opt('host', '198.18.0.2');

function once(servername) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const sock = tls.connect({ host, port: 443, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...(resume && session ? { session } : {}) });
    if (resume) sock.on('session', (s) => (session = s));
    let issuer = '';
    let reused = false;
    let buf = '';
    const timer = setTimeout(() => sock.destroy(new Error(`timeout for ${servername}`)), 15_000);
    sock.on('secureConnect', () => {
      reused = sock.isSessionReused();
      issuer = sock.getPeerCertificate()?.issuer?.CN ?? '';
      sock.write(`GET /small HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
    });
    sock.setEncoding('latin1');
    sock.on('data', (d) => (buf += d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const ms = performance.now() - t0;
      if (!/^HTTP\/1\.1 200/.test(buf)) reject(new Error(`${servername}: unexpected response ${JSON.stringify(buf.slice(0, 200))}`));
      else resolve({ ms, issuer, reused });
    });
  });
}

const ms = [];
const issuers = new Set();
let resumed = 0;
for (let i = 0; i < count; i++) {
  const name = same ? `${prefix}.bench.test` : `${prefix}-${i}.bench.test`;
  const r = await once(name);
  ms.push(r.ms);
  // A resumed session carries no certificate (getPeerCertificate() is empty): nothing to report.
  if (r.issuer) issuers.add(r.issuer);
  if (r.reused) resumed++;
}
console.log(JSON.stringify({ ms, issuers: [...issuers], resumed }));
