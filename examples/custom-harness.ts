/**
 * Composing r3mes-miner into another Effect application, with swapped layers: the core miner (coordinator, loop,
 * statistics) runs on in-memory ports from "r3mes-miner/testing", one of which injects faults, so the program
 * shows retries and a rollback without any chain or IPFS node.
 *
 *   node_modules/.bin/node examples/custom-harness.ts
 */
import { Effect, Layer } from "effect"
import { minerLayer, MiningCoordinator, MiningLoop, NetworkError } from "../src/index.ts"
import {
  InMemoryJournal,
  TestChain,
  TestGradientStore,
  testMinerConfig,
  TestPowSolver,
  TestTaskSource,
  TestTrainer
} from "../src/testing/index.ts"

const config = testMinerConfig({ maxActiveTransactions: 4 })

const miner = minerLayer(config, {
  chain: TestChain.layer(),
  taskSource: TestTaskSource.layer(),
  // IPFS refuses every third upload once: the coordinator retries it with back-off.
  gradientStore: TestGradientStore.layer({
    faults: { add: { failWhen: (i) => (i % 3 === 2 ? new NetworkError({ message: "ipfs busy" }) : undefined) } }
  }),
  trainer: TestTrainer.layer(),
  journal: InMemoryJournal.layer(),
  powSolver: TestPowSolver.layer()
})

export const program = Effect.gen(function*() {
  const loop = yield* MiningLoop
  const summary = yield* loop.run({
    iterations: 8,
    onFinished: (record) => Effect.log(`${record.transaction_id}: ${record.state} (ipfs attempts ${record.attempts.ipfs_upload})`)
  })
  const stats = yield* (yield* MiningCoordinator).getStatistics
  yield* Effect.log(`committed ${summary.committed} of ${summary.transactions}; retries ${stats.retries.total}`)
  return summary
}).pipe(Effect.provide(Layer.orDie(miner)))

if (import.meta.main) {
  Effect.runPromise(program).then(
    (summary) => process.exit(summary.committed === summary.transactions ? 0 : 1),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
