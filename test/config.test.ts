/** The settings schema (src/config/schema.ts) and `recall train`'s settings built on it (src/config/train.ts). */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { defineRecallCommand, runCli } from "../src/cli/command.ts";
import {
  atLeast,
  defineSettings,
  parseCommandLine,
  readYamlMapping,
  resolveSettings,
  settingsArgs,
  settingsHelp,
  settingsTree,
  treeEntries,
  type CommandLineSpec,
  type SettingEntry,
  type SettingsOf,
} from "../src/config/schema.ts";
import { parseTrainCommandLine, TRAIN_ARGS, TRAIN_SETTINGS, trainSettingsTree, trainSettingsYaml, type TrainSettings } from "../src/config/train.ts";
import { RecallError } from "../src/errors.ts";
import { EVAL_ARGS, parseEvalFlags, readConfigFile, resolveConfig, resolveEvalConfig } from "../src/eval/config.ts";
import { parseServeCommandLine, SERVE_ARGS } from "../src/retrieval/serve_config.ts";

const tmp = mkdtempSync(join(tmpdir(), "recall-config-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const yamlFile = (name: string, text: string) => {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
};

const S = defineSettings({
  "data.path": { type: "string", default: "in.parquet", flags: ["path"], help: "input" },
  "data.size": { type: "int", default: 8, check: atLeast(1), flags: ["size"], help: "batch" },
  "opt.lr": { type: "float", default: 1e-6, flags: ["lr"], help: "learning rate" },
  "opt.betas": { type: "list<float>", default: [0.9, 0.999], help: "betas" },
  "opt.kind": { type: "enum", choices: ["kl", "low_var_kl"], aliases: { k3: "low_var_kl" }, refused: { adaptive: "(adaptive) is not implemented" }, default: "kl", help: "kind" },
  "data.files": { type: "list<string>", default: [], flags: ["files"], help: "files" },
  "data.cap": { type: "int", nullable: true, default: null, help: "cap" },
  "run.fast": { type: "bool", default: false, flags: ["fast"], help: "fast" },
  "run.nodes": { type: "int", default: 1, flags: ["nodes"], ignored: "one device; ignored", help: "nodes" },
  "run.token": { type: "string", default: "", secret: true, flags: ["token"], help: "token" },
});
const SPEC: CommandLineSpec = { keyFlags: false, overrides: true, options: { config: { type: "string", help: "yaml" } }, ignoredFlags: { api_key: "no network" } };

function resolveArgs(args: string[], yaml?: string) {
  const cl = parseCommandLine(S, args, SPEC);
  const file = yaml === undefined ? [] : treeEntries(S, parse(yaml) as Record<string, unknown>, "run.yaml");
  const r = resolveSettings(S, [...file, ...cl.flags, ...cl.overrides]);
  return { ...r, notes: [...cl.notes, ...r.notes] };
}
const fails = (args: string[], yaml?: string): string => {
  try {
    resolveArgs(args, yaml);
  } catch (e) {
    expect(e).toBeInstanceOf(RecallError);
    expect((e as Error).message).not.toContain("\n");
    return (e as Error).message;
  }
  throw new Error(`no error for ${args.join(" ")}`);
};

describe("schema: layers and types", () => {
  test("precedence: default < YAML < flag < override; sources recorded", () => {
    expect(resolveArgs([]).values["data.size"]).toBe(8);
    expect(resolveArgs([], "data: {size: 16}").values["data.size"]).toBe(16);
    expect(resolveArgs(["--size", "32"], "data: {size: 16}").values["data.size"]).toBe(32);
    const r = resolveArgs(["data.size=64", "--size", "32"], "data: {size: 16}");
    expect(r.values["data.size"]).toBe(64);
    expect(r.sources["data.size"]).toEqual({ kind: "override", text: "data.size=64" });
    expect(resolveArgs(["--size", "32"], "data: {size: 16}").sources["data.size"]).toEqual({ kind: "flag", flag: "size", text: "32" });
    expect(resolveArgs([], "data.size: 16").sources["data.size"]).toEqual({ kind: "file", file: "run.yaml", key: "data.size" });
    // within one layer the later value wins
    expect(resolveArgs(["data.size=2", "data.size=3"]).values["data.size"]).toBe(3);
  });
  test("YAML: nested tree, flat dotted keys, and a mix", () => {
    const nested = resolveArgs([], "data:\n  path: a.parquet\n  files: [x, y]\nopt:\n  lr: 3.0e-5\n").values;
    const flat = resolveArgs([], "data.path: a.parquet\ndata.files: [x, y]\nopt.lr: 3.0e-5\n").values;
    const mixed = resolveArgs([], "data:\n  path: a.parquet\ndata.files: [x, y]\nopt: {lr: 3.0e-5}\n").values;
    for (const v of [nested, flat, mixed]) expect(v).toMatchObject({ "data.path": "a.parquet", "data.files": ["x", "y"], "opt.lr": 3e-5 });
    expect(fails([], "data: 5")).toBe("'data' in run.yaml must be a mapping of keys, got 5");
  });
  test("coercion of every type from text and from YAML values", () => {
    const v = resolveArgs(["--lr", "1e-6", "--size=12", "opt.betas=[0.8, 0.95]", "opt.kind=k3", "--fast", "False", "--files", "a.parquet,b.parquet", "data.cap=7"]).values;
    expect(v).toMatchObject({ "opt.lr": 1e-6, "data.size": 12, "opt.betas": [0.8, 0.95], "opt.kind": "low_var_kl", "run.fast": false, "data.files": ["a.parquet", "b.parquet"], "data.cap": 7 });
    for (const t of ["true", "True", "1", "yes"]) expect(resolveArgs([`run.fast=${t}`]).values["run.fast"]).toBe(true);
    for (const t of ["false", "FALSE", "0", "no"]) expect(resolveArgs(["--fast", t]).values["run.fast"]).toBe(false);
    expect(resolveArgs(["--fast"]).values["run.fast"]).toBe(true); // a bare bool flag is true (store_true)
    expect(resolveArgs(["--fast", "--size", "3"]).values).toMatchObject({ "run.fast": true, "data.size": 3 });
    expect(resolveArgs(["--fast", "data.size=3"]).values).toMatchObject({ "run.fast": true, "data.size": 3 });
    const y = resolveArgs([], "data: {path: 12, size: 4, files: [a, 3], cap: null}\nopt: {betas: [0.5, '0.6'], kind: low_var_kl}\nrun: {fast: true}\n").values;
    expect(y).toMatchObject({ "data.path": "12", "data.size": 4, "data.files": ["a", "3"], "data.cap": null, "opt.betas": [0.5, 0.6], "run.fast": true });
    expect(resolveArgs(["--lr", "-1e-6"]).values["opt.lr"]).toBe(-1e-6); // a negative number is a value, not a flag
  });
  test("Hydra override forms: +key, ++key, quoted values, list syntaxes, null/None", () => {
    expect(resolveArgs(["+data.size=5"]).values["data.size"]).toBe(5);
    expect(resolveArgs(["++data.size=6"]).values["data.size"]).toBe(6);
    expect(resolveArgs(["data.path='my file.parquet'"]).values["data.path"]).toBe("my file.parquet");
    expect(resolveArgs(["data.path=a=b"]).values["data.path"]).toBe("a=b");
    expect(resolveArgs(["data.files=['a.parquet', 'b.parquet']"]).values["data.files"]).toEqual(["a.parquet", "b.parquet"]);
    expect(resolveArgs(["data.files=[a,b]"]).values["data.files"]).toEqual(["a", "b"]);
    expect(resolveArgs(['data.files=["a"]']).values["data.files"]).toEqual(["a"]);
    expect(resolveArgs(["data.files=[]"]).values["data.files"]).toEqual([]);
    expect(resolveArgs(["data.files=one.parquet"]).values["data.files"]).toEqual(["one.parquet"]);
    expect(resolveArgs(["data.cap=5", "data.cap=null"]).values["data.cap"]).toBeNull();
    expect(resolveArgs(["data.cap=None"]).values["data.cap"]).toBeNull();
    expect(fails(["data.size=None"])).toBe("override data.size=None cannot be null (data.size expects an integer)");
    expect(fails([], "data: {size: null}")).toBe("'data.size' in run.yaml cannot be null (data.size expects an integer)");
  });
  test("each bad value names the key and where it came from", () => {
    expect(fails(["--size", "abc"])).toBe("flag --size expects a number, got 'abc'");
    expect(fails(["--size", "2.5"])).toBe("flag --size expects an integer, got '2.5'");
    expect(fails([], "data: {size: 2.5}")).toBe("'data.size' in run.yaml expects an integer, got '2.5'");
    expect(fails(["data.size=abc"])).toBe("override data.size=abc expects a number, got 'abc'");
    expect(fails(["data.size=0"])).toBe("override data.size=0 must be >= 1, got 0");
    expect(fails([], "data: {size: 0}")).toBe("'data.size' in run.yaml must be >= 1, got 0");
    expect(fails(["--fast", "maybe"])).toBe("flag --fast expects true or false, got 'maybe'");
    expect(fails(["opt.kind=k9"])).toBe("override opt.kind=k9 must be one of kl, low_var_kl, got 'k9'");
    expect(fails(["opt.kind=adaptive"])).toBe("override opt.kind=adaptive: 'adaptive' (adaptive) is not implemented");
    expect(fails(["opt.betas=[0.9, x]"])).toBe("override opt.betas=[0.9, x] expects a list of numbers, got '[0.9, x]'");
    expect(fails(["data.files=[a"])).toBe("override data.files=[a expects a list like [a, b], got '[a'");
    expect(fails([], "data: {path: [a]}")).toBe(`'data.path' in run.yaml must be a string, got ["a"]`);
    expect(fails([], "run: {fast: 2}")).toBe("'run.fast' in run.yaml expects true or false, got 2");
    expect(fails(["--size"])).toBe("flag --size needs a value");
    // a bad value is refused even when a later layer overrides it
    expect(fails(["--size", "x", "data.size=3"])).toBe("flag --size expects a number, got 'x'");
  });
  test("unknown keys and flags: refused in one line with a suggestion", () => {
    expect(fails(["data.sise=3"])).toBe("unknown key 'data.sise' in override data.sise=3 (did you mean 'data.size'?)");
    expect(fails(["x.lr=3"])).toBe("unknown key 'x.lr' in override x.lr=3 (did you mean 'opt.lr'?)");
    expect(fails([], "data: {sise: 3}")).toBe("unknown key 'data.sise' in run.yaml (did you mean 'data.size'?)");
    expect(fails([], "model: {path: m}")).toBe("unknown key 'model' in run.yaml");
    expect(fails(["--sise", "3"])).toBe("unknown flag '--sise' (did you mean --size?)");
    expect(fails(["stray"])).toBe("unexpected argument 'stray' (settings are given as key=value)");
    // FlashRAG-style commands keep unknown file keys instead
    const r = resolveSettings(S, treeEntries(S, { gpu_id: "0,1", data: { size: 2 } }, "f.yaml"), { keepUnknownFileKeys: true });
    expect(r.extra).toEqual({ gpu_id: "0,1" });
    expect(() => resolveSettings(S, [{ key: "gpu_id", value: 1, source: { kind: "flag", flag: "gpu_id" } }], { keepUnknownFileKeys: true })).toThrow(RecallError);
  });
  test("ignored settings and flags: one note each when given, values of secrets never echoed", () => {
    expect(resolveArgs([]).notes).toEqual([]);
    const r = resolveArgs(["--nodes", "4", "--api_key", "sk-123", "--api_key", "sk-456", "--token", "tk-1"]);
    expect(r.notes).toEqual(["--api_key: no network", "--nodes 4: one device; ignored"]);
    expect(r.values["run.token"]).toBe("tk-1");
    expect(JSON.stringify(r.notes)).not.toContain("sk-");
    expect(resolveArgs(["run.nodes=2"]).notes).toEqual(["override run.nodes=2: one device; ignored"]);
    expect(resolveArgs([], "run: {nodes: 2}").notes).toEqual(["'run.nodes' in run.yaml: one device; ignored"]);
    expect(settingsTree(S, r.values)).not.toHaveProperty("run.token");
    expect(JSON.stringify(settingsTree(S, r.values))).not.toContain("tk-1");
  });
  test("values are typed from the declaration", () => {
    const v: SettingsOf<typeof S> = resolveArgs([]).values;
    const lr: number = v["opt.lr"];
    const files: string[] = v["data.files"];
    const cap: number | null = v["data.cap"];
    const kind: "kl" | "low_var_kl" = v["opt.kind"];
    // @ts-expect-error a nullable setting is not a plain number
    const capNumber: number = v["data.cap"];
    // @ts-expect-error no such key
    void v["opt.lrr"];
    expect([lr, files, cap, kind, capNumber]).toEqual([1e-6, [], null, "kl", null]);
  });
  test("declaration errors are caught when the schema is defined", () => {
    expect(() => defineSettings({ a: { type: "int", default: 0, check: atLeast(1), help: "" } })).toThrow(/default of 'a' must be >= 1/);
    expect(() => defineSettings({ a: { type: "int", default: null, help: "" } })).toThrow(/not nullable/);
    expect(() => defineSettings({ a: { type: "int", default: 1, help: "" }, "a.b": { type: "int", default: 1, help: "" } })).toThrow(/parent/);
  });
  test("citty args and help come from the schema", () => {
    const args = settingsArgs(S, SPEC);
    expect(Object.keys(args)).toEqual(["config", "path", "size", "lr", "files", "fast", "nodes", "token", "api_key"]);
    expect(args.size).toMatchObject({ type: "string", description: "batch (default 8; = data.size)" });
    expect(args.nodes!.description).toContain("[ignored: one device; ignored]");
    const keyFlags = settingsArgs(S, { keyFlags: true, overrides: false });
    expect(Object.keys(keyFlags)).toContain("opt.betas");
    expect(settingsHelp(S)).toContain("opt.kind");
    expect(settingsHelp(S)).toMatch(/data\.cap\s+int\? = null\s+cap/);
  });
  test("readYamlMapping: one line for a missing file, bad YAML, a non-mapping", () => {
    expect(() => readYamlMapping(join(tmp, "nope.yaml"), "--config")).toThrow(/^--config '.*nope.yaml' not found$/);
    expect(() => readYamlMapping(yamlFile("bad.yaml", "a: [1,\n"), "--config")).toThrow(/is not valid YAML/);
    expect(() => readYamlMapping(yamlFile("list.yaml", "- a\n"), "--config")).toThrow(/must be a YAML mapping/);
    expect(readYamlMapping(yamlFile("empty.yaml", ""), "--config")).toEqual({});
  });
});

describe("recall train settings", () => {
  const REQUIRED = ["--train_files", "t.parquet", "--actor_model_path", "m"];
  const train = (args: string[]) => parseTrainCommandLine([...REQUIRED, ...args]);

  test("defaults are ReCall's train.sh values (SPEC §6)", () => {
    const s = train([]).settings;
    expect(s).toMatchObject({
      "actor_rollout_ref.actor.optim.lr": 1e-6,
      "actor_rollout_ref.actor.optim.weight_decay": 0.01,
      "actor_rollout_ref.actor.grad_clip": 1.0,
      "data.train_batch_size": 256,
      "actor_rollout_ref.rollout.n": 5,
      "actor_rollout_ref.actor.ppo_mini_batch_size": 64,
      "actor_rollout_ref.actor.ppo_epochs": 1,
      "data.max_prompt_length": 1536,
      "data.max_response_length": 6656,
      "actor_rollout_ref.rollout.temperature": 1.0,
      "actor_rollout_ref.rollout.top_p": 0.99,
      "actor_rollout_ref.rollout.val_kwargs.temperature": 0,
      "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
      "actor_rollout_ref.actor.kl_loss_coef": 0.001,
      "actor_rollout_ref.actor.clip_ratio": 0.2,
      "actor_rollout_ref.actor.clip_ratio_c": 3.0,
      "actor_rollout_ref.actor.entropy_coeff": 0.001,
      "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
      "trainer.save_freq": 10,
      "trainer.test_freq": 10,
      "trainer.total_epochs": 2,
      "trainer.logger": ["console"],
      "actor_rollout_ref.actor.optim.betas": [0.9, 0.999],
    });
    expect(Object.keys(TRAIN_SETTINGS).length).toBe(Object.keys(s).length);
  });

  test("every train.sh flag sets its key (snake_case and kebab-case)", () => {
    const table: [string, string, string, unknown][] = [
      ["train_files", "data.train_files", "['a.parquet', 'b.parquet']", ["a.parquet", "b.parquet"]],
      ["test_files", "data.val_files", "v.parquet", ["v.parquet"]],
      ["prompt_key", "data.prompt_key", "prompt", "prompt"],
      ["train_batch_size", "data.train_batch_size", "128", 128],
      ["ppo_mini_batch_size", "actor_rollout_ref.actor.ppo_mini_batch_size", "32", 32],
      ["lr", "actor_rollout_ref.actor.optim.lr", "3e-6", 3e-6],
      ["max_prompt_length", "data.max_prompt_length", "512", 512],
      ["max_response_length", "data.max_response_length", "1024", 1024],
      ["use_re_call", "data.use_re_call", "False", false],
      ["prompt_template_name", "data.prompt_template_name", "re_call_template_base", "re_call_template_base"],
      ["system_prompt", "data.system_prompt", "Use calc.", "Use calc."],
      ["actor_model_path", "actor_rollout_ref.model.path", "/models/qwen", "/models/qwen"],
      ["rollout_n", "actor_rollout_ref.rollout.n", "8", 8],
      ["max_turns", "actor_rollout_ref.rollout.max_turns", "3", 3],
      ["search_url", "data.search_url", "http://127.0.0.1:8000", "http://127.0.0.1:8000"],
      ["sandbox_url", "actor_rollout_ref.rollout.sandbox_url", "http://127.0.0.1:8080", "http://127.0.0.1:8080"],
      ["project_name", "trainer.project_name", "p", "p"],
      ["experiment_name", "trainer.experiment_name", "e", "e"],
      ["save_freq", "trainer.save_freq", "-1", -1],
      ["test_freq", "trainer.test_freq", "5", 5],
      ["total_epochs", "trainer.total_epochs", "3", 3],
      ["save_path", "trainer.default_local_dir", "ckpt", "ckpt"],
      ["nnodes", "trainer.nnodes", "2", 2],
      ["n_gpus_per_node", "trainer.n_gpus_per_node", "8", 8],
      ["rollout_name", "actor_rollout_ref.rollout.name", "sglang", "sglang"],
      ["rollout_tp", "actor_rollout_ref.rollout.tensor_model_parallel_size", "2", 2],
      ["rollout_gpu_util", "actor_rollout_ref.rollout.gpu_memory_utilization", "0.7", 0.7],
      ["rollout_dtype", "actor_rollout_ref.rollout.dtype", "bf16", "bfloat16"],
      ["reward_manager", "reward_model.reward_manager", "naive", "naive"],
      ["save_batches", "trainer.save_batches", "true", true],
      ["profile", "trainer.profile", "true", true],
      ["lora_rank", "actor_rollout_ref.model.lora_rank", "32", 32],
      ["lora_alpha", "actor_rollout_ref.model.lora_alpha", "64", 64],
      ["lora_dropout", "actor_rollout_ref.model.lora_dropout", "0.05", 0.05],
      ["target_modules", "actor_rollout_ref.model.target_modules", "q_proj,v_proj", ["q_proj", "v_proj"]],
    ];
    for (const [flag, key, text, want] of table) {
      for (const spelled of [flag, flag.replace(/_/g, "-")]) {
        const s = parseTrainCommandLine(["--train_files", "t.parquet", "--actor_model_path", "m", `--${spelled}`, text]).settings;
        expect([flag, s[key as keyof TrainSettings] as unknown]).toEqual([flag, want]);
      }
      expect(Object.keys(TRAIN_ARGS)).toContain(flag);
    }
    // every setting flag of the command is in the table (plus --config, --print_config, --wandb_api_key)
    expect(Object.keys(TRAIN_ARGS).sort()).toEqual([...table.map((t) => t[0]), "config", "print_config", "wandb_api_key"].sort());
  });

  test("train.sh's dotted overrides as bare arguments", () => {
    const r = train([
      "algorithm.adv_estimator=grpo",
      "data.max_response_length=64",
      "actor_rollout_ref.actor.optim.lr=1e-6",
      "actor_rollout_ref.actor.kl_loss_type=k3",
      "actor_rollout_ref.rollout.val_kwargs.do_sample=False",
      "+trainer.val_before_train=false",
      "trainer.total_training_steps=null",
    ]);
    expect(r.settings).toMatchObject({
      "data.max_response_length": 64,
      "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
      "actor_rollout_ref.rollout.val_kwargs.do_sample": false,
      "trainer.val_before_train": false,
      "trainer.total_training_steps": null,
    });
  });

  test("ignored keys and flags are explained once; the wandb key is never echoed or recorded", () => {
    const r = train([
      "--nnodes", "1", "--n_gpus_per_node", "8", "--wandb_api_key", "wk-SECRET",
      "actor_rollout_ref.model.use_remove_padding=True", "actor_rollout_ref.actor.fsdp_config.param_offload=True",
      "actor_rollout_ref.rollout.gpu_memory_utilization=0.6", "trainer.logger=['console','wandb']", "trainer.critic_warmup=0",
    ]);
    expect(r.notes).toEqual([
      "--wandb_api_key: no network logger; metrics go to metrics.jsonl and report.html",
      "override actor_rollout_ref.model.use_remove_padding=True: recall never pads inside a sequence; ignored",
      "override actor_rollout_ref.actor.fsdp_config.param_offload=True: no FSDP in recall; ignored",
      "override actor_rollout_ref.rollout.gpu_memory_utilization=0.6: recall sizes its KV cache from max_num_seqs and the lengths; ignored",
      "override trainer.logger=['console','wandb']: wandb: no network logger; metrics go to metrics.jsonl and report.html",
      "--nnodes 1: recall trains on one device; ignored",
      "--n_gpus_per_node 8: recall trains on one device; ignored",
      "override trainer.critic_warmup=0: GRPO has no critic; ignored",
    ]);
    expect(JSON.stringify(r)).not.toContain("wk-SECRET");
    expect(trainSettingsYaml(r.settings)).not.toContain("wk-SECRET");
    expect(train([]).notes).toEqual([]);
  });

  test("refusals: one line naming the key and source", () => {
    const msg = (args: string[]) => {
      try {
        parseTrainCommandLine(args);
      } catch (e) {
        expect(e).toBeInstanceOf(RecallError);
        return (e as Error).message;
      }
      return "no error";
    };
    expect(msg(["--lr", "fast", ...REQUIRED])).toBe("flag --lr expects a number, got 'fast'");
    expect(msg([...REQUIRED, "actor_rollout_ref.rollout.n=abc"])).toBe("override actor_rollout_ref.rollout.n=abc expects a number, got 'abc'");
    const cfg = yamlFile("run.yaml", "data:\n  max_prompt_length: -5\n");
    expect(msg(["--config", cfg, ...REQUIRED])).toBe(`'data.max_prompt_length' in ${cfg} must be >= 1, got -5`);
    expect(msg([...REQUIRED, "actor_rollout_ref.actor.optim.lrr=1"])).toBe(
      "unknown key 'actor_rollout_ref.actor.optim.lrr' in override actor_rollout_ref.actor.optim.lrr=1 (did you mean 'actor_rollout_ref.actor.optim.lr'?)",
    );
    expect(msg([...REQUIRED, "algorithm.kl_ctrl.type=adaptive"])).toContain("'adaptive' (adaptive KL controller) is not implemented");
    expect(msg([...REQUIRED, "trainer.logger=[console,neptune]"])).toContain("has unknown logger 'neptune'");
    expect(msg(["--actor_model_path", "m"])).toContain("no training data: pass --train_files");
    expect(msg(["--train_files", "t.parquet"])).toContain("no model: pass --actor_model_path");
    expect(msg([...REQUIRED, "--ppo_mini_batch_size", "512"])).toBe("flag --ppo_mini_batch_size: ppo_mini_batch_size 512 is larger than data.train_batch_size 256");
    expect(msg([...REQUIRED, "actor_rollout_ref.actor.use_dynamic_bsz=false"])).toContain("set actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu");
    expect(msg([...REQUIRED, "trainer.resume_mode=resume_path"])).toContain("needs trainer.resume_from_path");
    expect(msg(["--config", join(tmp, "missing.yaml")])).toBe(`--config '${join(tmp, "missing.yaml")}' not found`);
  });

  test("--print_config: the tree round-trips through YAML into the same settings", () => {
    const first = parseTrainCommandLine([
      "--print_config", "--train_files", "[a.parquet, b.parquet]", "--actor_model_path", "m", "--lr", "2e-6",
      "actor_rollout_ref.actor.clip_ratio_high=0.28", "data.val_batch_size=16", "trainer.logger=[console]", "data.search_url=",
    ]);
    expect(first.printConfig).toBe(true);
    const tree = trainSettingsTree(first.settings);
    expect((tree.actor_rollout_ref as { actor: { optim: { lr: number } } }).actor.optim.lr).toBe(2e-6);
    const file = yamlFile("printed.yaml", trainSettingsYaml(first.settings));
    const again = parseTrainCommandLine(["--config", file]);
    expect(again.settings).toEqual(first.settings);
    expect(again.printConfig).toBe(false);
    // a file written by hand with flat dotted keys reads the same as the nested tree
    const flat = yamlFile("flat.yaml", stringify(Object.fromEntries(Object.entries(first.settings))));
    expect(parseTrainCommandLine(["--config", file]).settings).toEqual(parseTrainCommandLine(["--config", flat]).settings);
    // --print_config works before the required inputs are known
    expect(parseTrainCommandLine(["--print_config"]).settings["data.train_files"]).toEqual([]);
  });

  test("typed values", () => {
    const s = train([]).settings;
    const lr: number = s["actor_rollout_ref.actor.optim.lr"];
    const files: string[] = s["data.train_files"];
    const mode: "token-mean" | "seq-mean-token-sum" | "seq-mean-token-mean" | "seq-mean-token-sum-norm" = s["actor_rollout_ref.actor.loss_agg_mode"];
    const steps: number | null = s["trainer.total_training_steps"];
    // @ts-expect-error an enum is not any string
    const est: "ppo" = s["algorithm.adv_estimator"];
    expect([lr, files, mode, steps, est] as unknown[]).toEqual([1e-6, ["t.parquet"], "token-mean", null, "grpo"]);
  });
});

describe("CLI: key=value overrides reach commands that take them", () => {
  test("a command with overrides gets them; others refuse stray arguments", async () => {
    let seen: string[] = [];
    const withOverrides = defineRecallCommand({
      meta: { name: "t" },
      args: { lr: { type: "string", description: "lr" } },
      overrides: { help: "  a.b  int\n" },
      run({ rawArgs }) {
        seen = rawArgs;
      },
    });
    const plain = defineRecallCommand({ meta: { name: "p" }, args: { lr: { type: "string", description: "lr" } }, run() {} });
    const root = defineRecallCommand({ meta: { name: "recall" }, subCommands: { t: withOverrides, p: plain } });
    expect(await runCli(root, ["t", "--lr", "1", "actor_rollout_ref.actor.optim.lr=1e-6", "+data.max_response_length=64"], "0")).toBe(0);
    expect(seen).toEqual(["--lr", "1", "actor_rollout_ref.actor.optim.lr=1e-6", "+data.max_response_length=64"]);
    expect(await runCli(root, ["p", "--lr", "1", "a.b=1"], "0")).toBe(1);
    expect(await runCli(root, ["t", "stray"], "0")).toBe(1);
  });
});

describe("recall eval and retriever serve on the schema", () => {
  test("eval: the same flags as before, each from one declaration; bare --apply_chat; --json switch", () => {
    const flags = [
      "method_name", "data_dir", "dataset_name", "split", "dataset_path", "question_key", "answer_key", "save_dir", "save_note", "limit", "seed", "sgl_remote_url",
      "openai_base_url", "model", "api_key", "openai_api", "generator_model", "remote_retriever_url", "sandbox_url", "system_prompt", "tool_backend", "index_path",
      "corpus_path", "retrieval_method", "retrieval_topk", "apply_chat", "chat_template", "temperature", "top_p", "top_k", "max_new_tokens", "max_tokens_per_turn", "max_turns",
      "max_response_length", "context_length", "metrics", "retrieval_recall_topk", "workers", "max_retries", "request_timeout", "retry_backoff", "resume", "adapter",
    ];
    expect(Object.keys(EVAL_ARGS).sort()).toEqual([...flags, "config_path", "json"].sort());
    const p = parseEvalFlags(["--apply_chat", "--limit", "3", "--json", "--config_path", "c.yaml"]);
    expect(p.json).toBe(true);
    expect(p.configPath).toBe("c.yaml");
    const cfg = resolveEvalConfig(p.flags);
    expect(cfg).toMatchObject({ apply_chat: true, limit: 3, random_sample: false });
    expect("top_p" in cfg).toBe(false); // unset nullable settings are absent, not null
    expect(resolveEvalConfig(parseEvalFlags(["--apply_chat", "False", "--seed", "4"]).flags)).toMatchObject({ apply_chat: false, seed: 4, random_sample: true });
  });
  test("eval: issue 11 settings from their declarations — split list, question/answer keys, chat template, two token budgets", () => {
    const cfg = resolveEvalConfig(parseEvalFlags(["--split", "dev,test", "--question_key", "problem", "--answer_key", "answer", "--chat_template", "model", "--max_tokens_per_turn", "1024"]).flags);
    expect(cfg).toMatchObject({ split: ["dev", "test"], question_key: "problem", answer_key: "answer", chat_template: "model", max_tokens_per_turn: 1024, max_new_tokens: 512 });
    expect(resolveEvalConfig(parseEvalFlags(["--split", "[dev, test]"]).flags).split).toEqual(["dev", "test"]);
    expect(EVAL_ARGS.split!.description).toBe("Split file name; a list (test,dev) evaluates each split into its own run folder (default test)");
    expect(EVAL_ARGS.max_tokens_per_turn!.description).toBe("New tokens per assistant turn of re-call and research (ReCall.run asks for 512) (default 512)");
    expect(() => resolveEvalConfig(parseEvalFlags(["--max_tokens_per_turn", "0"]).flags)).toThrow("flag --max_tokens_per_turn must be >= 1, got 0");
    const y = yamlFile("recall_eval.yaml", "framework: sgl_remote\ngenerator_max_input_len: 8192\ngeneration_params: {do_sample: false, max_tokens: 8192}\nsplit: [test]\n");
    expect(resolveConfig(readConfigFile(y), {}, y)).toMatchObject({ max_new_tokens: 8192, max_tokens_per_turn: 512, temperature: 0, split: ["test"] });
  });
  test("eval: FlashRAG YAML (generation_params, metric_setting, test_sample_num, unknown keys kept)", () => {
    const y = yamlFile("eval_config.yaml", "test_sample_num: 7\ngeneration_params: {max_tokens: 64, do_sample: false}\nmetric_setting: {retrieval_recall_topk: 2}\nframework: vllm\nmetrics: [em, rouge-l]\ndataset_path: /d/hotpot.jsonl\n");
    const cfg = resolveConfig(readConfigFile(y), { temperature: "0.5" }, y);
    expect(cfg).toMatchObject({ limit: 7, max_new_tokens: 64, temperature: 0.5, retrieval_recall_topk: 2, metrics: ["em"], dataset_name: "hotpot", save_note: "re-call" });
    expect(cfg.extra).toEqual({ framework: "vllm", metric_setting: { retrieval_recall_topk: 2 }, unsupported_metrics: ["rouge-l"] });
    expect(() => resolveConfig(readConfigFile(y), { workers: "0" }, y)).toThrow("flag --workers must be >= 1, got 0");
    expect(() => resolveConfig({ method_name: "iterretgen" }, {}, y)).toThrow("'method_name' in " + y + ": 'iterretgen' (FlashRAG's ITER-RETGEN pipeline) is not implemented in recall");
  });
  test("retriever serve: YAML keys, flags over them, other FlashRAG keys ignored, dense methods refused", () => {
    const y = yamlFile("retriever_config.yaml", "retrieval_method: BM25\nindex_path: /idx\nretrieval_topk: 2\nfaiss_gpu: true\n");
    expect(parseServeCommandLine(["--config", y])).toMatchObject({ retrieval_method: "bm25", index_path: "/idx", retrieval_topk: 2, port: 8000, num_retriever: 1, log_requests: false });
    expect(parseServeCommandLine(["--config", y, "--topk", "4", "--index_path", "/other", "--log_requests", "--port", "0"])).toMatchObject({ index_path: "/other", retrieval_topk: 4, port: 0, log_requests: true });
    expect(Object.keys(SERVE_ARGS)).toEqual(["config", "index_path", "corpus_path", "topk", "num_retriever", "port", "host", "log_requests", "max_top_n", "max_batch", "max_results"]);
    expect(() => parseServeCommandLine(["--config", yamlFile("dense.yaml", "retrieval_method: e5\nindex_path: /idx\n")])).toThrow(/retrieval_method 'e5' .* only bm25/);
    expect(() => parseServeCommandLine([])).toThrow("no index: pass --index_path or --config with index_path");
    expect(() => parseServeCommandLine(["--index_path", "/idx", "--num_retriever", "300"])).toThrow("flag --num_retriever must be in [0, 256], got 300");
  });
});
