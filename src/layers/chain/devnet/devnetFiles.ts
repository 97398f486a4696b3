import { readFileSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect, Schema } from "effect"
import { classify } from "../../../domain/classify.ts"
import { type MiningError, ValidationError } from "../../../domain/errors.ts"
import { acquirePidLock } from "../../process/pidLock.ts"

/**
 * Persistent mode's files in the devnet's data dir: `devnet.json` (the registry, chain id and owner, so a restart
 * reuses the registry), `anvil-state.json` (anvil's chain dump) and `devnet.lock` (two devnets never share one
 * directory: they would overwrite each other's chain dump).
 */

export const devnetFileName = "devnet.json"
export const stateFileName = "anvil-state.json"
const lockFileName = "devnet.lock"

const AddressString = Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{40}$/, { expected: "an address" }))

/** `<dataDir>/devnet.json`. */
export const DevnetFile = Schema.Struct({
  registry: AddressString,
  chain_id: Schema.Int,
  owner: AddressString,
  lease_seconds: Schema.Int,
  /**
   * keccak256 of the contract artifact the registry was deployed from: a devnet.json from an older version (no such
   * key, or another artifact) names a registry without today's functions, which is deployed anew.
   */
  artifact: Schema.optionalKey(Schema.String)
})
export type DevnetFile = typeof DevnetFile.Type

/** The devnet.json of a previous run, or undefined when there is none. */
export const readDevnetFile = (dataDir: string): Effect.Effect<DevnetFile | undefined, ValidationError> => {
  const path = join(dataDir, devnetFileName)
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch {
    return Effect.succeed(undefined)
  }
  const invalid = (cause: string) =>
    new ValidationError({
      message: `${path} is not a devnet description`,
      field: "data dir",
      cause,
      hint: "remove the data dir's devnet files (devnet.json, anvil-state.json) to start a fresh devnet"
    })
  return Effect.try({ try: () => JSON.parse(text) as unknown, catch: (e) => invalid(String(e)) }).pipe(
    Effect.flatMap((json) => Schema.decodeUnknownEffect(DevnetFile)(json)),
    Effect.mapError((e) => (e instanceof ValidationError ? e : invalid(e.message)))
  )
}

/** Written aside and renamed: a devnet killed mid-write leaves the previous description, never half of one. */
export const writeDevnetFile = (dataDir: string, file: DevnetFile): Effect.Effect<void, MiningError> =>
  Effect.try({
    try: () => {
      const path = join(dataDir, devnetFileName)
      writeFileSync(`${path}.tmp`, `${JSON.stringify(file, null, 2)}\n`)
      renameSync(`${path}.tmp`, path)
    },
    catch: (e) => classify(e, `writing ${join(dataDir, devnetFileName)}`)
  })

/** `<dataDir>/devnet.lock` names our pid while the devnet runs (rules: process/pidLock.ts). */
export const lockDataDir = (dataDir: string) =>
  acquirePidLock({
    path: join(dataDir, lockFileName),
    what: `the devnet data dir ${dataDir}`,
    resource: "data dir",
    hint: "stop that devnet, or give this one another data dir",
    sameProcessHint: "a devnet of this process already runs on it: share that one, or give this one another data dir"
  })
