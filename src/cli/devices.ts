import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { ResourceError } from "../domain/errors.ts"
import { checkDevices, decideDevice, type DeviceCheck } from "../layers/onnx/devices.ts"
import { onnxProfile } from "../layers/onnx/OnnxTrainer.ts"
import { logToStderr } from "./errors.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { printJson } from "./monitorClient.ts"
import { table } from "./render.ts"
import { loadSettings, settingFlags } from "./settingsFlags.ts"

const json = Flag.Boolean("json").pipe(Flag.withDescription("Print JSON on stdout instead of text."), Flag.withDefault(false))

/** The profile a gradient trained on the device would carry (one thread, no graph optimisation: the miner's). */
const profileOf = (c: DeviceCheck) => onnxProfile({ intraOpNumThreads: 1, executionProvider: c.device, graphOptimizationLevel: "disabled" })

const checkJson = (c: DeviceCheck) => ({
  device: c.device,
  installed: c.installed,
  initialises: c.initialises,
  step_ms: c.stepMs === undefined ? null : Number(c.stepMs.toFixed(3)),
  reason: c.reason ?? null,
  profile: profileOf(c)
})

const renderChecks = (checks: ReadonlyArray<DeviceCheck>): string =>
  table(
    ["device", "installed", "initialises", "ms/step", "profile it writes (ep · threads · graph · isa · platform)"],
    checks.map((c) => {
      const p = profileOf(c)
      return [
        c.device,
        c.installed ? "yes" : "no",
        c.installed ? (c.initialises ? "yes" : "no") : "-",
        c.stepMs === undefined ? "-" : c.stepMs.toFixed(2),
        `${p.ep} · ${p.threads} · ${p.graph_optimization} · ${p.isa} · ${p.platform}`
      ]
    }),
    { right: [3] }
  )

export const devicesCommand = Command.make(
  "devices",
  { settings: settingFlags(), json },
  Effect.fnUntraced(function*(input) {
    const { config } = yield* loadSettings(input.settings)
    const checks = yield* checkDevices()
    const auto = decideDevice("auto", checks)
    const configured = decideDevice(config.device, checks)
    const runtime = profileOf(checks[0]!).runtime
    if (input.json) {
      yield* printJson({
        runtime,
        devices: checks.map(checkJson),
        auto: auto instanceof ResourceError ? null : { device: auto.device, reason: auto.reason },
        configured: configured instanceof ResourceError
          ? { requested: config.device, device: null, error: configured.message, hint: configured.hint ?? null }
          : { requested: config.device, device: configured.device, reason: configured.reason }
      })
    } else {
      const why = checks.filter((c) => c.reason !== undefined).map((c) => `  ${c.device}: ${c.reason}`)
      yield* Console.log([
        `${runtime} · each device tried with a training step of the default MLP (batch 32)`,
        "",
        renderChecks(checks),
        ...(why.length === 0 ? [] : ["", "why not:", ...why]),
        "",
        auto instanceof ResourceError ? "" : `--device auto trains on ${auto.device}: ${auto.reason}`,
        configured instanceof ResourceError
          ? `--device ${config.device} (configured) cannot train: see above\nhint: ${configured.hint}`
          : config.device === "auto"
          ? ""
          : `--device ${config.device} (configured) trains on ${configured.device}: ${configured.reason}`
      ].filter((line, i, all) => line !== "" || (i > 0 && all[i - 1] !== "")).join("\n").trimEnd())
    }
    // A script can ask whether the configured device trains here.
    if (configured instanceof ResourceError) return yield* new CliExit({ code: ExitCode.failure })
  }, logToStderr)
).pipe(
  Command.withDescription(
    "The compute devices of this machine (DESIGN.md \"Compute devices\"): for cpu, cuda and webgpu, whether the " +
      "provider is installed, whether it initialises (a training step is tried in a child process), its step time, " +
      "and the determinism profile a gradient trained there would carry; then what --device auto picks and whether " +
      "the configured R3MES_DEVICE / --device can train (exit 1 when it cannot)."
  ),
  Command.withExamples([
    { command: "r3mes-miner devices", description: "What can train here, and what auto picks" },
    { command: "r3mes-miner devices --device cuda --json", description: "As JSON; exit 1 unless CUDA trains here" }
  ])
)
