/**
 * verl's `trainer.*` keys that describe a cluster and its loggers, shared by `recall train` and `recall sft`: accepted
 * so users' YAML and scripts work unchanged, and explained once when set (recall runs on one device and logs to
 * metrics.jsonl and report.html).
 */
import { atLeast, defineSettings } from "./schema.ts";

export const NO_NETWORK_LOGGER = "no network logger; metrics go to metrics.jsonl and report.html";
export const ONE_DEVICE = "recall trains on one device; ignored";
/** verl's logger names. */
const LOGGERS = ["console", "wandb", "tensorboard", "mlflow", "swanlab", "vemlp_wandb", "clearml"];

export const VERL_TRAINER_CLUSTER_KEYS = defineSettings({
  "trainer.logger": {
    type: "list<string>",
    default: ["console"],
    check: (l) => {
      const bad = l.filter((x) => !LOGGERS.includes(x));
      return bad.length ? `has unknown logger '${bad[0]}' (verl's: ${LOGGERS.join(", ")})` : undefined;
    },
    explain: (l) => {
      const other = l.filter((x) => x !== "console");
      return other.length ? `${other.join(", ")}: ${NO_NETWORK_LOGGER}` : undefined;
    },
    help: "Loggers (console; verl's others are explained: metrics go to metrics.jsonl and report.html)",
  },
  "trainer.nnodes": { type: "int", default: 1, check: atLeast(1), flags: ["nnodes"], ignored: ONE_DEVICE, help: "verl: nodes" },
  "trainer.n_gpus_per_node": { type: "int", default: 1, check: atLeast(1), flags: ["n_gpus_per_node"], ignored: ONE_DEVICE, help: "verl: GPUs per node" },
  "trainer.default_hdfs_dir": { type: "string", nullable: true, default: null, ignored: "no HDFS copy; checkpoints stay in default_local_dir; ignored", help: "verl: HDFS checkpoint copy" },
});
