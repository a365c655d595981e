/**
 * Presentational components alone, rendered with ink-testing-library: each gets readonly props and
 * must show them, escaped, within its width.
 */
process.env.TZ = 'UTC';
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { cleanup, render } from 'ink-testing-library';
import { runningStatus, sampleExchange } from '../../test/fixtures.js';
import { parseFilter } from '../filter.js';
import { columnsFor } from '../format.js';
import { stripSgr } from '../test/render.js';
import { DetailView } from './DetailView.js';
import { ExchangeRow } from './ExchangeRow.js';
import { FilterBar } from './FilterBar.js';
import { Header } from './Header.js';
import { StartForm } from './StartForm.js';

afterEach(() => cleanup());

const frame = (r: { lastFrame(): string | undefined }) => stripSgr(r.lastFrame() ?? '');

describe('Header', () => {
  const base = { width: 100, everConnected: false, capture: undefined, captureBusy: undefined, rate: 0, shown: 0, total: 0, follow: true } as const;

  test('unreachable: the reason, then the hint on its own line', () => {
    const r = render(
      <Header {...base} connection={{ status: 'unreachable', attempt: 3, message: 'tproxy-helper is not running at /run/tproxy/helper.sock', hint: 'start it', retryInMs: 2000 }} />,
    );
    assert.equal(frame(r), 'helper ✗ unreachable: tproxy-helper is not running at /run/tproxy/helper.sock\nhint: start it · retrying every ≤2s');
  });

  test('reconnecting after a loss keeps the last known capture state', () => {
    const r = render(<Header {...base} everConnected capture={runningStatus()} connection={{ status: 'lost', attempt: 2, message: 'closed' }} />);
    assert.match(frame(r), /^helper ↻ reconnecting \(attempt 2\): closed · capture ● running \(last known\)/);
  });

  test('a hostile unavailable reason is escaped', () => {
    const r = render(<Header {...base} connection={{ status: 'connected', attempt: 0 }} capture={{ ...runningStatus(), running: false, available: false, reason: 'no\x1b]0;x\x07 addon' }} />);
    assert.match(frame(r), /✗ unavailable: no\\x1b\]0;x\\x07 addon/);
  });
});

describe('ExchangeRow', () => {
  test('fits the columns exactly and escapes the URL', () => {
    const columns = columnsFor(100);
    const ex = sampleExchange({ request: { ...sampleExchange().request, url: 'https://example.com/a\x1b[2Jb' } });
    const r = render(<ExchangeRow exchange={ex} columns={columns} selected={false} />);
    const line = frame(r);
    assert.equal([...line].length, 100);
    assert.match(line, /^07:08:09\.123 GET {5}example\.com {7}\/a\\x1b\[2Jb\s+200 {6}http\/1\.1 {2}1\.5 KiB {2}153ms$/);
  });
});

describe('DetailView', () => {
  test('shows the window of lines at the scroll position and where that is', () => {
    const lines = Array.from({ length: 30 }, (_, i) => [{ text: `line ${i + 1}` }]);
    const r = render(<DetailView width={90} height={5} id={7} lines={lines} scroll={10} />);
    assert.equal(frame(r).split('\n')[0]!.trim(), 'exchange #7 · lines 11-14 of 30 · ↑↓ PgUp PgDn scroll · y curl · Esc back');
    assert.deepEqual(frame(r).split('\n').slice(1), ['line 11', 'line 12', 'line 13', 'line 14']);
  });
});

describe('FilterBar and StartForm', () => {
  test('the filter line shows the text, the count and what is wrong with it', () => {
    const r = render(<FilterBar filter={parseFilter('status:4 host:api*')} editing shown={3} total={10} hints="" />);
    assert.match(frame(r), /^\/status:4 host:api\*  {2}3 of 10 · Enter keep · Esc clear {2}status:4: expected a code/);
  });

  test('the form marks the field the helper complained about', () => {
    const r = render(
      <StartForm width={80} height={8} running={false} form={{ ports: '0', ipv6: true, field: 'ports', submitting: false, error: 'ports[0]: ports[] must be between 1 and 65535', errorField: 'ports' }} />,
    );
    assert.match(frame(r), /› Ports {3}0/);
    assert.match(frame(r), /ports\[0\]: ports\[\] must be between 1 and 65535/);
  });
});
