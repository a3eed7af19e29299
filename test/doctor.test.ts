/** `recall doctor` from source (the compiled binary is tested in binary.test.ts). */
import { describe, expect, test } from "bun:test";
import { runRecall } from "./harness.ts";


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
});
