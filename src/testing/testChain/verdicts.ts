import { Effect, Option } from "effect"
import type { MinerIdentity } from "../../domain/mining.ts"
import { OnChainVerdict, type VerdictRecord, verdictName } from "../../domain/verification.ts"
import type { Registry } from "./registry.ts"
import { revert } from "./reverts.ts"

interface VerdictState {
  readonly verifier: string
  readonly verdict: number
  readonly reportHash: string
  readonly block: bigint
}

const verdictKey = (roundId: bigint, chunkId: number, verifier: string) => `${roundId}:${chunkId}:${verifier.toLowerCase()}`

/**
 * The registry's verifier role in memory (contracts/MiningRegistry.sol is the reference): who may record verdicts
 * (`setVerifier`, the owner's) and the verdicts, one per (round, chunk, verifier), each remembering its block so a
 * rewind forgets it. The test chain's own account is the only one that records verdicts.
 */
export const makeVerdicts = (deps: {
  readonly identity: MinerIdentity
  readonly registry: Registry
  /** Whether the account is a verifier at genesis (and again after `reset`). */
  readonly verifierAtGenesis: boolean
  /** Whether the owner finalized the round: it takes no new verdict. */
  readonly isFinalized: (roundId: bigint) => boolean
}) => {
  const { identity, registry } = deps
  const verifiers = new Set<string>()
  const verdicts = new Map<string, VerdictState>()
  const genesis = () => {
    verifiers.clear()
    verdicts.clear()
    if (deps.verifierAtGenesis) verifiers.add(identity.miner.toLowerCase())
  }
  genesis()

  const isVerifier = (address: string) => verifiers.has(address.toLowerCase())

  /** The contract's recordVerdict checks, in its order, for this account, without changing anything. */
  const check = Effect.fnUntraced(function*(record: VerdictRecord) {
    const { chunkId, roundId } = record
    if (!isVerifier(identity.miner)) {
      return yield* revert("NotVerifier", [identity.miner], "the registry owner allows verifiers with setVerifier")
    }
    if (!registry.hasSubmission(roundId, chunkId)) {
      return yield* revert("NoSubmission", [roundId.toString(), String(chunkId)])
    }
    if (!Number.isInteger(record.verdict) || verdictName(record.verdict) === undefined) {
      return yield* revert("InvalidVerdict", [String(record.verdict)])
    }
    const existing = verdicts.get(verdictKey(roundId, chunkId, identity.miner))
    if (existing !== undefined) {
      return yield* revert("AlreadyVerified", [
        roundId.toString(),
        String(chunkId),
        identity.miner,
        String(existing.verdict),
        existing.reportHash
      ])
    }
    if (deps.isFinalized(roundId)) return yield* revert("RoundNotOpen", [roundId.toString()])
  })

  /** Stores a verdict that passed `check`, mined in `block`. */
  const record = (verdict: VerdictRecord, block: bigint): void => {
    verdicts.set(verdictKey(verdict.roundId, verdict.chunkId, identity.miner), {
      verifier: identity.miner,
      verdict: verdict.verdict,
      reportHash: verdict.reportHash.toLowerCase(),
      block
    })
  }

  const getVerdict = (roundId: bigint, chunkId: number, verifier: string): Option.Option<OnChainVerdict> =>
    Option.map(
      Option.fromUndefinedOr(verdicts.get(verdictKey(roundId, chunkId, verifier))),
      (v) => new OnChainVerdict({ roundId, chunkId, verifier: v.verifier, verdict: v.verdict, reportHash: v.reportHash })
    )

  return {
    check,
    record,
    getVerdict,
    isVerifier,
    setVerifier: (address: string, allowed: boolean): void => {
      if (allowed) verifiers.add(address.toLowerCase())
      else verifiers.delete(address.toLowerCase())
    },
    /** Every verdict recorded, in block order. */
    all: (): ReadonlyArray<OnChainVerdict> =>
      [...verdicts.entries()]
        .sort(([, a], [, b]) => (a.block < b.block ? -1 : a.block > b.block ? 1 : 0))
        .map(([key, v]) => {
          const [roundId, chunkId] = key.split(":")
          return new OnChainVerdict({
            roundId: BigInt(roundId!),
            chunkId: Number(chunkId),
            verifier: v.verifier,
            verdict: v.verdict,
            reportHash: v.reportHash
          })
        }),
    /** Forgets the verdicts of blocks after `target` (a verdict is mined after its submission, so theirs go too). */
    rewindTo: (target: bigint): void => {
      for (const [key, v] of verdicts) if (v.block > target) verdicts.delete(key)
    },
    reset: genesis
  }
}

export type Verdicts = ReturnType<typeof makeVerdicts>
