import { Schema } from "effect"

/** The states of a mining transaction, in the order a successful one passes through them. */
export const TransactionState = Schema.Literals([
  "pending",
  "training",
  "ipfs_upload",
  "blockchain_submit",
  "task_complete",
  "committed",
  "failed",
  "rolled_back"
])
export type TransactionState = typeof TransactionState.Type

/** The four working steps; each has a progress flag, a latency and an attempt count in the record. */
export const Step = Schema.Literals(["training", "ipfs_upload", "blockchain_submit", "task_complete"])
export type Step = typeof Step.Type
export const steps: ReadonlyArray<Step> = ["training", "ipfs_upload", "blockchain_submit", "task_complete"]

export const terminalStates: ReadonlyArray<TransactionState> = ["committed", "failed", "rolled_back"]

export const isTerminal = (state: TransactionState): boolean => terminalStates.includes(state)

/**
 * Legal transitions. `failed` is reachable only before anything external exists to undo (pending, training);
 * once an upload may exist the only failure exit is `rolled_back`. Task completion is non-critical, so
 * `task_complete` leads to `committed`. `committed` is final but for one way out: the chain is the judge, and a chain
 * that lost the submission (a devnet reset, a reorg) turns the record into `rolled_back` (chain_lost) — from
 * `task_complete` too, when recovery finds it gone before `committed` was journaled.
 */
const transitions: Readonly<Record<TransactionState, ReadonlyArray<TransactionState>>> = {
  pending: ["training", "failed"],
  training: ["ipfs_upload", "failed"],
  ipfs_upload: ["blockchain_submit", "rolled_back"],
  blockchain_submit: ["task_complete", "rolled_back"],
  task_complete: ["committed", "rolled_back"],
  committed: ["rolled_back"],
  failed: [],
  rolled_back: []
}

export const canTransition = (from: TransactionState, to: TransactionState): boolean =>
  transitions[from].includes(to)

export const nextStates = (from: TransactionState): ReadonlyArray<TransactionState> => transitions[from]
