/**
 * The terminal's size, updated on the stdout 'resize' event (Ink 6 has no useWindowSize yet).
 * Falls back to 80x24 when stdout is not a terminal.
 */
import { useStdout } from 'ink';
import { useEffect, useState } from 'react';

export interface WindowSize {
  readonly columns: number;
  readonly rows: number;
}

export function useWindowSize(): WindowSize {
  const { stdout } = useStdout();
  const read = (): WindowSize => ({ columns: stdout.columns || 80, rows: stdout.rows || 24 });
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = () => setSize((prev) => {
      const next = read();
      return next.columns === prev.columns && next.rows === prev.rows ? prev : next;
    });
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);
  return size;
}
