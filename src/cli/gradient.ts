import { stat } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import type { ValidationError } from "../domain/errors.ts"
import { decodeEnvelope, elementCount, tensorByteLength } from "../domain/gradientEnvelope.ts"
import { maxGradientBytes } from "../domain/MinerConfig.ts"
import { computeCid } from "../layers/ipfs/importOptions.ts"
import { sha256Hex } from "../layers/sha256Hex.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { readFileBytes, reportFailure, storeFlags, withStore } from "./ipfs.ts"

/**
 * `r3mes-miner gradient inspect CID|FILE`: decodes a gradient envelope (validating magic, version, canonical
 * header, tensor sizes; content is never evaluated) and prints its header as JSON with the envelope's
 * `gradient_hash` — sha256 of the envelope bytes, the value a submission records on chain — and, with
 * --expect-hash, whether it matches.
 */

const target = Argument.String("target").pipe(
  Argument.withMetavar("CID|FILE"),
  Argument.withDescription("An envelope file, or the CID of one in the store (--ipfs / --data-dir)")
)

const expectHash = Flag.String("expect-hash").pipe(
  Flag.withMetavar("0xHEX"),
  Flag.withDescription("The gradient hash the envelope should have (e.g. from the chain's submission); exit 1 if not"),
  Flag.optional
)

const isFile = (path: string): Effect.Effect<boolean> =>
  Effect.promise(() => stat(path).then((s) => s.isFile(), () => false))

const hexHash = /^0x[0-9a-fA-F]{64}$/

export const inspectCommand = Command.make(
  "inspect",
  { target, expectHash, store: storeFlags },
  Effect.fnUntraced(function*({ expectHash, store, target }) {
    if (Option.isSome(expectHash) && !hexHash.test(expectHash.value)) {
      yield* Console.error(
        `--expect-hash ${expectHash.value} is invalid: expected 0x followed by 64 hex digits\nhint: pass the gradient hash as the chain shows it`
      )
      return yield* new CliExit({ code: ExitCode.usage })
    }
    const fromFile = yield* isFile(target)
    const bytes = fromFile
      ? yield* readFileBytes(target).pipe(Effect.catch(reportFailure))
      : yield* withStore(store, (gradients, settings) => gradients.get(target, maxGradientBytes(settings)))
    const cid = fromFile ? yield* computeCid(bytes).pipe(Effect.catch(reportFailure)) : target

    const envelope = yield* decodeEnvelope(bytes).pipe(
      Effect.catch((error: ValidationError) => reportFailure(error))
    )
    const gradientHash = sha256Hex(bytes)
    const matches = Option.map(expectHash, (expected) => expected.toLowerCase() === gradientHash)
    let offset = bytes.byteLength - envelope.tensors.reduce((n, t) => n + t.bytes.byteLength, 0)
    const report = {
      source: fromFile ? { file: target } : { cid: target },
      cid,
      bytes: bytes.byteLength,
      gradient_hash: gradientHash,
      gradient_hash_of: "sha256 of the whole envelope, as submitGradient records it",
      hash_check: Option.getOrNull(Option.map(expectHash, (expected) => ({
        expected,
        matches: Option.getOrElse(matches, () => false)
      }))),
      header: envelope.header,
      tensors: envelope.tensors.map((tensor) => {
        const entry = {
          name: tensor.spec.name,
          dtype: tensor.spec.dtype,
          shape: tensor.spec.shape,
          elements: elementCount(tensor.spec.shape),
          bytes: tensorByteLength(tensor.spec),
          offset
        }
        offset += tensor.bytes.byteLength
        return entry
      })
    }
    yield* Console.log(JSON.stringify(report, null, 2))
    if (Option.isSome(expectHash) && Option.contains(matches, false)) {
      yield* Console.error(`r3mes-miner: gradient hash ${gradientHash} does not match the expected ${expectHash.value}`)
      return yield* new CliExit({ code: ExitCode.failure })
    }
  })
).pipe(
  Command.withDescription(
    "Decode a gradient envelope (file, or CID fetched from the store) and print its header, tensors and " +
      "gradient_hash (sha256 of the envelope) as JSON. Exit 0 valid (and matching --expect-hash), 1 invalid, " +
      "unreadable or mismatching, 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner gradient inspect gradient.r3gr", description: "Header and hash of a local envelope" },
    {
      command: "r3mes-miner gradient inspect Qm… --expect-hash 0x…",
      description: "Fetch by CID from the embedded store and check the hash recorded on chain"
    }
  ])
)

export const gradientCommand = Command.make("gradient").pipe(
  Command.withDescription("Work with gradient envelopes (R3GR), the files miners pin and submit."),
  Command.withSubcommands([inspectCommand])
)
