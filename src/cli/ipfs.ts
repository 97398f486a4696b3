import { createReadStream } from "node:fs"
import { readFile } from "node:fs/promises"
import { Console, Effect } from "effect"
import { Argument, Command } from "effect/cli"
import { classify } from "../domain/classify.ts"
import type { MiningError } from "../domain/errors.ts"
import { maxGradientBytes, type MinerConfig } from "../domain/MinerConfig.ts"
import { minerSettings } from "../domain/MinerConfigSchema.ts"
import { gradientStoreLayer } from "../app/adapters.ts"
import { cidOf } from "../layers/ipfs/importOptions.ts"
import { GradientStore } from "../services/GradientStore.ts"
import { CliExit, ExitCode } from "./exit.ts"
import { loadSomeSettings, type SettingFlagValues, settingFlags } from "./settingsFlags.ts"

/**
 * `r3mes-miner ipfs …`: the operator's view of the gradient store the miner uses (the embedded node in the data
 * dir, or a Kubo daemon with --ipfs URL). Same settings, same import options, same CIDs as `mine`.
 */

const storeSettings = [
  minerSettings.ipfsApi,
  minerSettings.dataDir,
  minerSettings.maxGradientSizeMb,
  minerSettings.ipfsPeers,
  minerSettings.ipfsListen
] as const

/** --ipfs, --data-dir, --max-gradient-size-mb, --ipfs-peers, --ipfs-listen (env vars and defaults as for `mine`). */
export const storeFlags = settingFlags(storeSettings)

export type StoreSettings = Pick<MinerConfig, "ipfsApi" | "dataDir" | "maxGradientSizeMb" | "ipfsPeers" | "ipfsListen">

/** The three store settings from flags over the environment; an invalid one prints a line + hint and exits 2. */
export const loadStoreSettings = (
  values: SettingFlagValues,
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<StoreSettings, CliExit> => loadSomeSettings(storeSettings, values, env)

/** Prints a typed failure as one line plus its hint, and exits 1. */
export const reportFailure = (error: MiningError): Effect.Effect<never, CliExit> =>
  Console.error(`r3mes-miner: ${error.message}${error.hint === undefined ? "" : `\nhint: ${error.hint}`}`).pipe(
    Effect.andThen(Effect.fail(new CliExit({ code: ExitCode.failure })))
  )

/** Runs `f` against the store the flags select; store failures are reported, not thrown. */
export const withStore = <A>(
  values: SettingFlagValues,
  f: (store: GradientStore["Service"], settings: StoreSettings) => Effect.Effect<A, MiningError>
): Effect.Effect<A, CliExit> =>
  Effect.gen(function*() {
    const settings = yield* loadStoreSettings(values)
    return yield* GradientStore.use((store) => f(store, settings)).pipe(
      Effect.provide(gradientStoreLayer(settings)),
      Effect.catch(reportFailure)
    )
  })

export const readFileBytes = (path: string): Effect.Effect<Uint8Array, MiningError> =>
  Effect.tryPromise({
    try: async () => new Uint8Array(await readFile(path)),
    catch: (error) => classify(error, `cannot read ${path}`)
  })

const writeStdout = (bytes: Uint8Array): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    process.stdout.write(bytes, () => resume(Effect.void))
  })

const file = Argument.String("file").pipe(Argument.withMetavar("FILE"), Argument.withDescription("A file to read"))
const cid = Argument.String("cid").pipe(Argument.withMetavar("CID"), Argument.withDescription("A CIDv0 (Qm…) or CIDv1"))

const cidCommand = Command.make(
  "cid",
  { file },
  Effect.fnUntraced(function*({ file }) {
    // Streamed from disk through the importer with a blockstore that keeps nothing: no store is opened.
    const computed = yield* Effect.tryPromise({
      try: (signal) => cidOf(createReadStream(file), signal),
      catch: (error) => classify(error, `cannot read ${file}`)
    }).pipe(Effect.catch(reportFailure))
    yield* Console.log(computed.toString())
  })
).pipe(
  Command.withDescription(
    "Print the CID the store would give FILE (Kubo's default import settings: CIDv0, 256 KiB chunks, balanced " +
      "layout of 174 links, no raw leaves). Nothing is stored and no store or daemon is needed."
  )
)

const addCommand = Command.make(
  "add",
  { file, store: storeFlags },
  Effect.fnUntraced(function*({ file, store }) {
    const added = yield* withStore(store, (gradients) => Effect.flatMap(readFileBytes(file), gradients.add))
    yield* Console.log(added)
  })
).pipe(Command.withDescription("Store and pin FILE; print its CID."))

const catCommand = Command.make(
  "cat",
  { cid, store: storeFlags },
  Effect.fnUntraced(function*({ cid, store }) {
    const bytes = yield* withStore(store, (gradients, settings) => gradients.get(cid, maxGradientBytes(settings)))
    yield* writeStdout(bytes)
  })
).pipe(
  Command.withDescription(
    "Write the content of CID to stdout; refused (exit 1) when larger than --max-gradient-size-mb."
  )
)

const pinsCommand = Command.make(
  "pins",
  { store: storeFlags },
  Effect.fnUntraced(function*({ store }) {
    const pins = yield* withStore(store, (gradients) => gradients.pins)
    for (const pin of pins) yield* Console.log(pin)
  })
).pipe(Command.withDescription("List the pinned CIDs (recursive pins), one per line."))

const unpinCommand = Command.make(
  "unpin",
  { cid, store: storeFlags },
  Effect.fnUntraced(function*({ cid, store }) {
    yield* withStore(store, (gradients) => gradients.unpin(cid))
    yield* Console.log(`unpinned ${cid}`)
  })
).pipe(Command.withDescription("Release the pin of CID (succeeds when it was not pinned); `ipfs gc` frees the blocks."))

const gcCommand = Command.make(
  "gc",
  { store: storeFlags },
  Effect.fnUntraced(function*({ store }) {
    const removed = yield* withStore(store, (gradients) => gradients.gc)
    yield* Console.log(`removed ${removed} block${removed === 1 ? "" : "s"}`)
  })
).pipe(Command.withDescription("Delete every block no pin needs; print how many were removed."))

export const ipfsCommand = Command.make("ipfs").pipe(
  Command.withDescription(
    "Inspect and manage the gradient store: the embedded IPFS node in --data-dir (default), or the Kubo daemon " +
      "at --ipfs URL. Exit codes: 0 done, 1 the store failed (message and hint on stderr), 2 invalid usage."
  ),
  Command.withSubcommands([cidCommand, addCommand, catCommand, pinsCommand, unpinCommand, gcCommand]),
  Command.withExamples([
    { command: "r3mes-miner ipfs cid gradient.r3gr", description: "The CID a gradient file gets, storing nothing" },
    { command: "r3mes-miner ipfs pins --ipfs http://127.0.0.1:5001", description: "Pins held by a Kubo daemon" },
    { command: "r3mes-miner ipfs cat Qm… > gradient.r3gr", description: "Fetch a gradient from the embedded node" }
  ])
)
