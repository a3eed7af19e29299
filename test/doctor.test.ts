/** `recall doctor` from source and from the compiled single binary run far from node_modules. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, copyFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT, runRecall } from "./harness.ts";

const root = PROJECT_ROOT;

function checkReport(stdout: string) {
  const report = JSON.parse(stdout);
  expect(report.selftest.ok).toBe(true);
  expect(typeof report.adapter.vendor).toBe("string");
  expect(report.features).toBeArray();
  expect(report.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
  return report;
}

describe("recall doctor", () => {
  test("--json reports the adapter and a passing self-test", () => {
    const r = runRecall(["doctor", "--json"]);
    expect(r.code).toBe(0);
    checkReport(r.stdout);
  });

  test("dist/recall runs from an empty temp dir with no node_modules", () => {
    const build = Bun.spawnSync([process.execPath, "scripts/build.ts"], { cwd: root });
    expect(build.exitCode).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), "recall-bin-"));
    try {
      copyFileSync(join(root, "dist/recall"), join(dir, "recall"));
      Bun.spawnSync(["chmod", "+x", join(dir, "recall")]);
      const r = runRecall(["doctor", "--json"], { cwd: dir, bin: join(dir, "recall") });
      expect(r.code).toBe(0);
      checkReport(r.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
