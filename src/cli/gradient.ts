import { stat } from "node:fs/promises"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ValidationError } from "../domain/errors.ts"
import { minerSettings } from "../domain/MinerConfigSchema.ts"
import { decodeEnvelope, elementCount, tensorByteLength } from "../domain/gradientEnvelope.ts"
import { maxGradientBytes } from "../domain/MinerConfig.ts"
import { computeCid } from "../layers/ipfs/importOptions.ts"
import { sha256Hex } from "../layers/sha256Hex.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { findInJournal, findOnChain, type RecordedSubmission, scannedBlocks } from "./gradientOnChain.ts"
import { loadStoreSettings, readFileBytes, reportFailure, storeFlags, withStore } from "./ipfs.ts"
import { loadSomeSettings, type SettingFlagValues, settingFlags } from "./settingsFlags.ts"

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

/** Where the recorded hash is looked up without --expect-hash: the configured chain, else the data dir's journal. */
const chainFlags = settingFlags([minerSettings.rpcUrl, minerSettings.registryAddress])

/** The submission that names `cid`, from the chain when one is configured, else from the data dir's journal. */
const recordedSubmission = Effect.fnUntraced(function*(cid: string, dataDir: string, chain: SettingFlagValues) {
  const settings = yield* loadSomeSettings([minerSettings.rpcUrl, minerSettings.registryAddress], chain)
  if (Option.isSome(settings.rpcUrl)) {
    if (Option.isNone(settings.registryAddress)) {
      return yield* reportFailure(
        new ValidationError({
          message: "R3MES_RPC_URL is set but R3MES_REGISTRY_ADDRESS is not: cannot look the CID up on chain",
          hint: "give --registry (the MiningRegistry's address), or --expect-hash to check against a known hash"
        })
      )
    }
    const found = yield* findOnChain(settings.rpcUrl.value, settings.registryAddress.value, cid).pipe(
      Effect.catch(reportFailure)
    )
    return { where: `the chain's GradientSubmitted events (last ${scannedBlocks} blocks)`, found }
  }
  const found = yield* findInJournal(dataDir, cid).pipe(Effect.catch(reportFailure))
  return { where: `the journal of ${dataDir} (its miner's submissions on the devnet)`, found }
})

export const inspectCommand = Command.make(
  "inspect",
  { target, expectHash, store: storeFlags, chain: chainFlags },
  Effect.fnUntraced(function*({ chain, expectHash, store, target }) {
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
    const recorded = Option.isSome(expectHash)
      ? undefined
      : yield* recordedSubmission(cid, (yield* loadStoreSettings(store)).dataDir, chain)
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
      recorded_check: recorded === undefined ? null : {
        looked_in: recorded.where,
        found: Option.isSome(recorded.found),
        ...Option.match(recorded.found, {
          onNone: () => ({}),
          onSome: (submission) => ({ matches: submission.gradient_hash === gradientHash, submission })
        })
      },
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
    if (recorded !== undefined) yield* reportRecorded(cid, gradientHash, recorded)
  })
).pipe(
  Command.withDescription(
    "Decode a gradient envelope (file, or CID fetched from the store) and print its header, tensors and " +
      "gradient_hash (sha256 of the envelope) as JSON. Without --expect-hash, checks the hash against the submission " +
      "that names the CID: on the chain of --rpc-url and --registry, else in the data dir's journal (recorded_check). " +
      "Exit 0 valid (and matching), 1 invalid, unreadable or mismatching, 2 invalid usage."
  ),
  Command.withExamples([
    { command: "r3mes-miner gradient inspect gradient.r3gr", description: "Header and hash of a local envelope" },
    {
      command: "r3mes-miner gradient inspect Qm… --expect-hash 0x…",
      description: "Fetch by CID from the embedded store and check the hash recorded on chain"
    }
  ])
)

/** One line (and a hint when it does not check out) on stderr; a mismatch exits 1, like --expect-hash. */
const reportRecorded = Effect.fnUntraced(function*(
  cid: string,
  gradientHash: string,
  recorded: { readonly where: string; readonly found: Option.Option<RecordedSubmission> }
) {
  if (Option.isNone(recorded.found)) {
    yield* Console.error(
      `r3mes-miner: no submission names ${cid} in ${recorded.where}: the hash is not checked\n` +
        "hint: pass --rpc-url and --registry of the chain it was submitted to, or --expect-hash with the hash " +
        "the chain records"
    )
    return
  }
  const s = recorded.found.value
  const what = `the submission of round ${s.round_id} chunk ${s.chunk_id}${s.block_number === null ? "" : ` (block ${s.block_number})`}` +
    ` by ${s.by} in ${recorded.where}`
  if (s.gradient_hash === gradientHash) {
    yield* Console.error(`r3mes-miner: gradient hash ${gradientHash} matches ${what}`)
    return
  }
  yield* Console.error(
    `r3mes-miner: gradient hash ${gradientHash} does not match ${s.gradient_hash}, recorded by ${what}\n` +
      "hint: the content under this CID is not what was submitted: do not trust it"
  )
  return yield* new CliExit({ code: ExitCode.failure })
})

export const gradientCommand = Command.make("gradient").pipe(
  Command.withDescription("Work with gradient envelopes (R3GR), the files miners pin and submit."),
  Command.withSubcommands([inspectCommand])
)
