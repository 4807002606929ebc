// A supervised service that cannot start: `fedai up` quotes the service's own reason, not only
// its exit code, so a newcomer (and a CI log) sees why without opening the log folder.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { launchService } from '../src/commands/up';
import type { SpawnedService } from '../src/services';

test('a service that exits while starting: the error carries its one-line reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-launch-'));
  const children: SpawnedService[] = [];
  try {
    await assert.rejects(
      launchService(
        {
          service: 'router',
          name: 'router',
          portVar: 'ROUTER_PORT',
          preferredPort: 0,
          env: { ROUTER_HOST: '127.0.0.1', DATA_DIR: join(dir, 'router'), L402_ENABLED: 'maybe' },
          timeoutMs: 60_000,
        },
        { runDir: join(dir, 'run'), logsDir: join(dir, 'logs'), children, onStarted: async () => {} },
      ),
      (error: Error) => {
        assert.match(error.message, /^router exited while starting \(code 2\): .*L402_ENABLED/);
        return true;
      },
    );
  } finally {
    for (const child of children) child.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
