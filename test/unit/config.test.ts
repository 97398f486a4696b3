import { readFileSync } from "node:fs"
import { hostname } from "node:os"
import { inspect } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import { Cause, type Config, ConfigProvider, Duration, Effect, Exit, Option, Redacted } from "effect"
import { bytesToHex, getAddress, keccak256 as viemKeccak256 } from "viem"
import { checksumAddress, keccak256 } from "../../src/domain/eip55.ts"
import { loadSettings } from "../../src/cli/settingsFlags.ts"
import type { MinerConfig } from "../../src/domain/MinerConfig.ts"
import {
  configToJson,
  configValidationError,
  describeConfigError,
  formatConfigError,
  minerConfig,
  minerSettings,
  settingsMarkdownTable,
  settingsProvider,
  settingsTable,
  showSetting
} from "../../src/domain/MinerConfigSchema.ts"
import { settingsLayer, settingsLayerFrom } from "../../src/app/settings.ts"
import { defaultVerifyTolerance, fleetRunnerFromHostname, resolveFleetRunner } from "../../src/domain/minerSettings.ts"
import { makeRedactor, secretsOf } from "../../src/domain/redaction.ts"
import { renderConfig } from "../../src/cli/mine.ts"
import { Settings } from "../../src/services/Settings.ts"
import { endMarker, startMarker } from "../../scripts/update-readme-config.ts"

type Env = Readonly<Record<string, string | undefined>>

const load = (env: Env, overrides?: Env): Exit.Exit<MinerConfig, Config.ConfigError> =>
  Effect.runSyncExit(minerConfig.parse(settingsProvider({ env, overrides })))

const loaded = (env: Env, overrides?: Env): MinerConfig => {
  const exit = load(env, overrides)
  if (Exit.isFailure(exit)) assert.fail(`expected a valid config for ${JSON.stringify(env)}: ${Cause.pretty(exit.cause)}`)
  return exit.value
}

const failure = (env: Env, overrides?: Env): Config.ConfigError => {
  const exit = load(env, overrides)
  if (Exit.isSuccess(exit)) return assert.fail(`expected ${JSON.stringify(env)} to be rejected`)
  const error = Cause.squash(exit.cause) as Config.ConfigError
  assert.strictEqual(error._tag, "ConfigError")
  return error
}

const validKey = `0x${"4f".repeat(32)}`
const validToken = "s3cr3t-admin-token-value"
/** anvil's account 1, in its EIP-55 form; the second has one letter's case flipped. */
const checksummed = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
const misChecksummed = "0x70997970c51812dc3A010C7d01b50e0d17dc79C8"
const peerA = "/ip4/127.0.0.1/tcp/4011/p2p/12D3KooWK1Dd2Ugxx9NxLmeSnHPX4t1AUCAsgjXmozf9LEixk76i"
const peerB = "/dns4/verifier.example/tcp/4001/p2p/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
const secretRpcUrl = "https://user:s3cretpass@rpc.example.com:8443/v3/0123456789abcdef0123456789abcdef?apikey=zzzzzz"

describe("the settings table", () => {
  it("has one setting per MinerConfig field, with DESIGN.md's env names and flags", () => {
    assert.deepStrictEqual(
      settingsTable.map((s) => [s.env, `--${s.flag}`]),
      [
        ["R3MES_TRANSACTION_TIMEOUT", "--transaction-timeout"],
        ["R3MES_MAX_RETRIES", "--max-retries"],
        ["R3MES_POW_DIFFICULTY", "--difficulty"],
        ["R3MES_RETRY_INITIAL_DELAY", "--retry-initial-delay"],
        ["R3MES_RETRY_MAX_DELAY", "--retry-max-delay"],
        ["R3MES_RETRY_BACKOFF_FACTOR", "--retry-backoff-factor"],
        ["R3MES_MAX_GRADIENT_SIZE_MB", "--max-gradient-size-mb"],
        ["R3MES_MAX_ACTIVE_TRANSACTIONS", "--max-active-transactions"],
        ["R3MES_CIRCUIT_BREAKER_THRESHOLD", "--circuit-breaker-threshold"],
        ["R3MES_CIRCUIT_BREAKER_RESET", "--circuit-breaker-reset"],
        ["R3MES_MAX_CONSECUTIVE_FAILURES", "--max-consecutive-failures"],
        ["R3MES_PRIVATE_KEY", "--private-key"],
        ["R3MES_RPC_URL", "--rpc-url"],
        ["R3MES_REGISTRY_ADDRESS", "--registry"],
        ["R3MES_IPFS_API", "--ipfs"],
        ["R3MES_IPFS_PEERS", "--ipfs-peers"],
        ["R3MES_IPFS_LISTEN", "--ipfs-listen"],
        ["R3MES_DEVICE", "--device"],
        ["R3MES_DATA_DIR", "--data-dir"],
        ["R3MES_STATS_HOST", "--stats-host"],
        ["R3MES_STATS_PORT", "--stats-port"],
        ["R3MES_ADMIN_TOKEN", "--admin-token"],
        ["R3MES_LOG_FILE", "--log-file"],
        ["R3MES_VERIFY_SAMPLE", "--verify-sample"],
        ["R3MES_VERIFY_TOLERANCE", "--verify-tolerance"],
        ["R3MES_VERIFY_WINDOW", "--verify-window"],
        ["R3MES_FLEET_DATABASE_URL", "--fleet-database-url"],
        ["R3MES_FLEET_RUNNER", "--fleet-runner"],
        ["R3MES_FLEET_ADDRESS", "--fleet-address"],
        ["R3MES_FLEET_SIGNERS", "--fleet-signers"],
        ["R3MES_FLEET_LEASE", "--fleet-lease"]
      ]
    )
    assert.deepStrictEqual(
      settingsTable.filter((s) => s.secret).map((s) => s.env),
      ["R3MES_PRIVATE_KEY", "R3MES_ADMIN_TOKEN", "R3MES_FLEET_DATABASE_URL"]
    )
  })

  it("is what README.md shows, between its markers", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8")
    for (const setting of settingsTable) {
      assert.include(readme, setting.env, `README.md does not mention ${setting.env}`)
      assert.include(readme, `--${setting.flag}`, `README.md does not mention --${setting.flag}`)
    }
    const start = readme.indexOf(startMarker)
    const end = readme.indexOf(endMarker)
    assert.isTrue(start >= 0 && end > start, "README.md lacks the config-table markers")
    assert.strictEqual(
      readme.slice(start + startMarker.length, end).trim(),
      settingsMarkdownTable(),
      "README.md's configuration table is stale: run node_modules/.bin/node scripts/update-readme-config.ts"
    )
  })
})

describe("minerConfig", () => {
  it("uses DESIGN.md's defaults when nothing is set", () => {
    const config = loaded({})
    assert.deepStrictEqual(
      {
        ...config,
        transactionTimeout: Duration.toSeconds(config.transactionTimeout),
        retryInitialDelay: Duration.toSeconds(config.retryInitialDelay),
        retryMaxDelay: Duration.toSeconds(config.retryMaxDelay),
        circuitBreakerReset: Duration.toSeconds(config.circuitBreakerReset),
        verifyWindow: Duration.toSeconds(config.verifyWindow),
        fleetLease: Duration.toSeconds(config.fleetLease)
      },
      {
        transactionTimeout: 300,
        maxRetries: 3,
        powDifficulty: 20,
        retryInitialDelay: 1,
        retryMaxDelay: 60,
        retryBackoffFactor: 2,
        maxGradientSizeMb: 100,
        maxActiveTransactions: 10,
        circuitBreakerThreshold: 5,
        circuitBreakerReset: 30,
        maxConsecutiveFailures: 10,
        privateKey: Option.none(),
        rpcUrl: Option.none(),
        registryAddress: Option.none(),
        ipfsApi: "embedded",
        ipfsPeers: [],
        ipfsListen: Option.none(),
        device: "auto",
        dataDir: "./.r3mes",
        statsHost: "127.0.0.1",
        statsPort: 8080,
        adminToken: Option.none(),
        logFile: "./.r3mes/logs/miner.log",
        verifySample: 1,
        verifyTolerance: defaultVerifyTolerance,
        verifyWindow: 120,
        fleetDatabaseUrl: Option.none(),
        fleetRunner: Option.none(),
        fleetAddress: Option.none(),
        fleetSigners: [],
        fleetLease: 35
      }
    )
  })

  it("puts the default log file in the data dir; an explicit R3MES_LOG_FILE keeps its meaning", () => {
    // Issue 15: a default relative to the working directory made miners with different data dirs share one log.
    assert.strictEqual(loaded({ R3MES_DATA_DIR: "/srv/miner-a/" }).logFile, "/srv/miner-a/logs/miner.log")
    assert.strictEqual(loaded({ R3MES_DATA_DIR: "/srv/miner-b" }).logFile, "/srv/miner-b/logs/miner.log")
    assert.strictEqual(loaded({ R3MES_DATA_DIR: "/srv/b", R3MES_LOG_FILE: "logs/miner.log" }).logFile, "logs/miner.log")
  })

  it("treats an empty variable as unset", () => {
    assert.strictEqual(loaded({ R3MES_POW_DIFFICULTY: "" }).powDifficulty, 20)
  })

  it("reads every variable", () => {
    const config = loaded({
      R3MES_TRANSACTION_TIMEOUT: "12.5",
      R3MES_MAX_RETRIES: "7",
      R3MES_POW_DIFFICULTY: "24",
      R3MES_RETRY_INITIAL_DELAY: "0.25",
      R3MES_RETRY_MAX_DELAY: "4",
      R3MES_RETRY_BACKOFF_FACTOR: "1.5",
      R3MES_MAX_GRADIENT_SIZE_MB: "0.5",
      R3MES_MAX_ACTIVE_TRANSACTIONS: "2",
      R3MES_CIRCUIT_BREAKER_THRESHOLD: "9",
      R3MES_CIRCUIT_BREAKER_RESET: "0.1",
      R3MES_MAX_CONSECUTIVE_FAILURES: "4",
      R3MES_PRIVATE_KEY: validKey,
      R3MES_RPC_URL: "http://127.0.0.1:8545",
      R3MES_REGISTRY_ADDRESS: checksummed,
      R3MES_IPFS_API: "http://127.0.0.1:5001",
      R3MES_IPFS_PEERS: `${peerA}, ${peerB}`,
      R3MES_IPFS_LISTEN: "/ip4/0.0.0.0/tcp/4011",
      R3MES_DATA_DIR: "/var/lib/r3mes",
      R3MES_STATS_HOST: "0.0.0.0",
      R3MES_STATS_PORT: " 9090 ",
      R3MES_ADMIN_TOKEN: validToken,
      R3MES_LOG_FILE: "/var/log/r3mes.log"
    })
    assert.strictEqual(Duration.toMillis(config.transactionTimeout), 12_500)
    assert.strictEqual(config.maxRetries, 7)
    assert.strictEqual(config.powDifficulty, 24)
    assert.strictEqual(Duration.toMillis(config.retryInitialDelay), 250)
    assert.strictEqual(Duration.toMillis(config.retryMaxDelay), 4000)
    assert.strictEqual(config.retryBackoffFactor, 1.5)
    assert.strictEqual(config.maxGradientSizeMb, 0.5)
    assert.strictEqual(config.maxActiveTransactions, 2)
    assert.strictEqual(config.circuitBreakerThreshold, 9)
    assert.strictEqual(Duration.toMillis(config.circuitBreakerReset), 100)
    assert.strictEqual(config.maxConsecutiveFailures, 4)
    assert.strictEqual(Redacted.value(Option.getOrThrow(config.privateKey)), validKey)
    assert.deepStrictEqual(config.rpcUrl, Option.some("http://127.0.0.1:8545"))
    assert.deepStrictEqual(config.registryAddress, Option.some(checksummed))
    assert.strictEqual(config.ipfsApi, "http://127.0.0.1:5001")
    assert.deepStrictEqual(config.ipfsPeers, [peerA, peerB])
    assert.deepStrictEqual(config.ipfsListen, Option.some("/ip4/0.0.0.0/tcp/4011"))
    assert.strictEqual(config.dataDir, "/var/lib/r3mes")
    assert.strictEqual(config.statsHost, "0.0.0.0")
    assert.strictEqual(config.statsPort, 9090)
    assert.strictEqual(Redacted.value(Option.getOrThrow(config.adminToken)), validToken)
    assert.strictEqual(config.logFile, "/var/log/r3mes.log")
  })

  describe("accepts the bounds and rejects just outside them", () => {
    const cases: ReadonlyArray<readonly [env: string, accepted: ReadonlyArray<string>, rejected: ReadonlyArray<string>]> = [
      ["R3MES_POW_DIFFICULTY", ["16", "32"], ["15", "33", "20.5", "abc", "0x10x", "NaN", "-"]],
      ["R3MES_MAX_RETRIES", ["0", "100"], ["-1", "101", "1.5", "three"]],
      ["R3MES_TRANSACTION_TIMEOUT", ["0.001", "300"], ["0", "-1", "Infinity", "5s", "abc"]],
      ["R3MES_RETRY_INITIAL_DELAY", ["0.001"], ["0", "-0.5", "x"]],
      ["R3MES_RETRY_MAX_DELAY", ["1", "3600"], ["0", "0.5", "x"]],
      ["R3MES_RETRY_BACKOFF_FACTOR", ["1", "10"], ["0.99", "0", "x"]],
      ["R3MES_MAX_GRADIENT_SIZE_MB", ["0.001", "4096"], ["0", "-1", "x"]],
      ["R3MES_MAX_ACTIVE_TRANSACTIONS", ["1", "1000"], ["0", "-1", "2.5", "x"]],
      ["R3MES_CIRCUIT_BREAKER_THRESHOLD", ["1"], ["0", "1.5", "x"]],
      ["R3MES_CIRCUIT_BREAKER_RESET", ["0.5"], ["0", "x"]],
      ["R3MES_MAX_CONSECUTIVE_FAILURES", ["1", "1000"], ["0", "-1", "1.5", "x"]],
      ["R3MES_STATS_PORT", ["0", "65535"], ["-1", "65536", "80.5", "http"]],
      ["R3MES_VERIFY_SAMPLE", ["0", "0.25", "1"], ["-0.1", "1.01", "Infinity", "half"]],
      ["R3MES_VERIFY_TOLERANCE", ["0", "1e-4", "0.5"], ["-1e-4", "Infinity", "x"]],
      ["R3MES_VERIFY_WINDOW", ["0.5", "120"], ["0", "-1", "x"]],
      ["R3MES_PRIVATE_KEY", [validKey, validKey.toUpperCase().replace("0X", "0x")], ["0x1234", validKey.slice(2), `${validKey}00`, `0x${"zz".repeat(32)}`]],
      ["R3MES_RPC_URL", [
        "http://localhost:8545",
        "https://rpc.example",
        "https://user:pw@rpc.example/v3/key",
        "ws://127.0.0.1:8546",
        "wss://rpc.example/ws/v3/key?x=y"
      ], ["localhost:8545", "ftp://rpc.example", "http://", "rpc", "wss://user:pw@rpc.example/ws", "ws://key@rpc.example"]],
      ["R3MES_REGISTRY_ADDRESS", [
        `0x${"0".repeat(40)}`,
        checksummed,
        checksummed.toLowerCase(),
        `0x${checksummed.slice(2).toUpperCase()}`
      ], ["0x1234", `0x${"0".repeat(41)}`, "0".repeat(42), misChecksummed, `0x${"aB".repeat(20)}`]],
      ["R3MES_IPFS_API", ["embedded", "http://127.0.0.1:5001", "https://ipfs.example/api/v0"], ["kubo", "Embedded", "ws://127.0.0.1:5001"]],
      ["R3MES_DATA_DIR", ["data", "/tmp/r3mes dir"], ["   "]],
      ["R3MES_STATS_HOST", ["localhost", "::1"], ["local host"]],
      ["R3MES_ADMIN_TOKEN", [validToken], ["two words"]],
      ["R3MES_LOG_FILE", ["miner.log"], ["  "]],
      ["R3MES_FLEET_DATABASE_URL", [
        "postgres://r3mes:pw@db.example:5432/r3mes",
        "postgresql://db.example/r3mes",
        "POSTGRES://127.0.0.1",
        "postgres://r3mes:p%2Fss@[::1]:5432/r3mes?sslmode=require"
      ], ["db.example:5432/r3mes", "postgres:r3mes", "http://db.example/r3mes", "postgres://r3mes:p/ss@db/r3mes", "-7.5"]],
      ["R3MES_FLEET_RUNNER", ["a", "gpu-2.eu-west", "runner_7:a", "x".repeat(64)], ["two words", "ümlaut", "a/b", "x".repeat(65)]],
      ["R3MES_FLEET_ADDRESS", ["10.0.0.5:34431", "gpu-1.lan:1", "[::1]:65535", "[fe80::1]:80"], ["10.0.0.5", "10.0.0.5:0", "host:65536", ":80", "a b:80", "::1:80"]],
      ["R3MES_FLEET_SIGNERS", ["gpu-1", "gpu-1, gpu-2", "gpu-1,,gpu-2,"], ["gpu 1", "gpu-1,a/b", "x".repeat(65)]]
    ]
    for (const [env, accepted, rejected] of cases) {
      it(env, () => {
        for (const value of accepted) loaded({ [env]: value })
        for (const value of rejected) {
          const description = describeConfigError(failure({ [env]: value }))
          assert.strictEqual(description.setting?.env, env, `${env}=${value}`)
        }
      })
    }
  })

  it("requires the maximum retry delay to be at least the initial delay", () => {
    loaded({ R3MES_RETRY_INITIAL_DELAY: "5", R3MES_RETRY_MAX_DELAY: "5" })
    const message = formatConfigError(failure({ R3MES_RETRY_INITIAL_DELAY: "5", R3MES_RETRY_MAX_DELAY: "2" }))
    assert.strictEqual(
      message,
      "R3MES_RETRY_MAX_DELAY=2 is invalid: expected a number of seconds not less than R3MES_RETRY_INITIAL_DELAY (5) (flag --retry-max-delay)"
    )
  })
})

describe("embedded IPFS peering settings", () => {
  it("R3MES_IPFS_PEERS is a comma-separated list, trimmed, without empty entries or repeats", () => {
    assert.deepStrictEqual(loaded({ R3MES_IPFS_PEERS: ` ${peerA} ,, ${peerB},${peerA}, ` }).ipfsPeers, [peerA, peerB])
    assert.deepStrictEqual(loaded({}, { R3MES_IPFS_PEERS: peerB }).ipfsPeers, [peerB])
    const ip6 = "/ip6/::1/tcp/4011/p2p/12D3KooWK1Dd2Ugxx9NxLmeSnHPX4t1AUCAsgjXmozf9LEixk76i"
    assert.deepStrictEqual(loaded({ R3MES_IPFS_PEERS: ip6 }).ipfsPeers, [ip6])
  })

  it("a peer without its /p2p/<peer id> is refused, the entry named, with a hint", () => {
    const { hint, message } = describeConfigError(failure({ R3MES_IPFS_PEERS: `${peerA},/ip4/10.0.0.2/tcp/4011` }))
    assert.include(message, "R3MES_IPFS_PEERS=")
    assert.include(message, `"/ip4/10.0.0.2/tcp/4011" is not one`)
    assert.include(message, "--ipfs-peers")
    assert.include(hint, "/p2p/<peer id>")
  })

  it("addresses the node cannot dial (not TCP, a bad port or IP) are refused", () => {
    for (
      const bad of [
        "/ip4/127.0.0.1/udp/4011/quic-v1/p2p/12D3KooWK1Dd2Ugxx9NxLmeSnHPX4t1AUCAsgjXmozf9LEixk76i",
        "/ip4/127.0.0.1/tcp/70000/p2p/12D3KooWK1Dd2Ugxx9NxLmeSnHPX4t1AUCAsgjXmozf9LEixk76i",
        "/ip4/127.0.0.256/tcp/4011/p2p/12D3KooWK1Dd2Ugxx9NxLmeSnHPX4t1AUCAsgjXmozf9LEixk76i",
        "/ip4/127.0.0.1/tcp/4011/p2p/not-a-peer-id",
        "127.0.0.1:4011"
      ]
    ) {
      const { message } = describeConfigError(failure({ R3MES_IPFS_PEERS: bad }))
      assert.include(message, `${JSON.stringify(bad)} is not one`, bad)
    }
  })

  it("R3MES_IPFS_LISTEN is one IP multiaddr over TCP, port 0 meaning any free port", () => {
    assert.deepStrictEqual(loaded({ R3MES_IPFS_LISTEN: " /ip4/127.0.0.1/tcp/0 " }).ipfsListen, Option.some("/ip4/127.0.0.1/tcp/0"))
    assert.deepStrictEqual(loaded({ R3MES_IPFS_LISTEN: "/ip6/::/tcp/4011" }).ipfsListen, Option.some("/ip6/::/tcp/4011"))
    for (const bad of ["/ip4/127.0.0.1/tcp/65536", "/ip4/127.0.0.1/tcp/4011/p2p/12D3KooWK1Dd2Ugxx9NxLmeSnHPX4t1AUCAsgjXmozf9LEixk76i", "/dns4/localhost/tcp/4011", "4011"]) {
      const message = formatConfigError(failure({ R3MES_IPFS_LISTEN: bad }))
      assert.include(message, "expected a multiaddr like /ip4/127.0.0.1/tcp/4011 (flag --ipfs-listen)", bad)
    }
  })
})

describe("flags over env", () => {
  it("a flag value wins over the env var, which wins over the default", () => {
    assert.strictEqual(loaded({ R3MES_POW_DIFFICULTY: "18" }, { R3MES_POW_DIFFICULTY: "24" }).powDifficulty, 24)
    assert.strictEqual(loaded({ R3MES_POW_DIFFICULTY: "18" }, {}).powDifficulty, 18)
    assert.strictEqual(loaded({}, { R3MES_MAX_RETRIES: "0" }).maxRetries, 0)
  })

  it("a flag is validated like the env var, even when the env var is valid", () => {
    const error = failure({ R3MES_POW_DIFFICULTY: "20" }, { R3MES_POW_DIFFICULTY: "40" })
    assert.strictEqual(
      formatConfigError(error, { source: () => "flag" }),
      "--difficulty 40 is invalid: expected an integer from 16 to 32 (env R3MES_POW_DIFFICULTY)"
    )
  })

  it.effect("loadSettings maps CLI flag values onto their env vars and reports each value's source", () =>
    Effect.gen(function*() {
      const { config, sources } = yield* loadSettings(
        { powDifficulty: Option.some("24"), maxRetries: Option.none() },
        { R3MES_POW_DIFFICULTY: "18", R3MES_MAX_RETRIES: "5" }
      )
      assert.strictEqual(config.powDifficulty, 24)
      assert.strictEqual(config.maxRetries, 5)
      assert.strictEqual(sources["R3MES_POW_DIFFICULTY"], "flag")
      assert.strictEqual(sources["R3MES_MAX_RETRIES"], "env")
      assert.strictEqual(sources["R3MES_STATS_PORT"], "default")
    }))
})

describe("config error messages", () => {
  it("are one line naming the variable, its flag, the bad value and the allowed range", () => {
    assert.strictEqual(
      formatConfigError(failure({ R3MES_POW_DIFFICULTY: "12" })),
      "R3MES_POW_DIFFICULTY=12 is invalid: expected an integer from 16 to 32 (flag --difficulty)"
    )
    assert.strictEqual(
      formatConfigError(failure({ R3MES_MAX_RETRIES: "-1" })),
      "R3MES_MAX_RETRIES=-1 is invalid: expected an integer from 0 to 100 (flag --max-retries)"
    )
    assert.strictEqual(
      formatConfigError(failure({ R3MES_POW_DIFFICULTY: "abc" })),
      "R3MES_POW_DIFFICULTY=abc is invalid: expected an integer from 16 to 32 (flag --difficulty)"
    )
    assert.strictEqual(
      formatConfigError(failure({ R3MES_DATA_DIR: "  " })),
      `R3MES_DATA_DIR="  " is invalid: expected a non-empty path (flag --data-dir)`
    )
  })

  it("exist for every setting, on one line, with its range and flag", () => {
    const invalidValue: Readonly<Record<string, string>> = {
      R3MES_PRIVATE_KEY: "0xnot-a-key",
      R3MES_RPC_URL: "nowhere",
      R3MES_REGISTRY_ADDRESS: "0x12",
      R3MES_IPFS_API: "kubo",
      R3MES_DATA_DIR: " ",
      R3MES_STATS_HOST: "a b",
      R3MES_ADMIN_TOKEN: "a b",
      R3MES_LOG_FILE: " ",
      R3MES_FLEET_RUNNER: "a b",
      R3MES_FLEET_SIGNERS: "a b"
    }
    for (const setting of settingsTable) {
      const value = invalidValue[setting.env] ?? "-7.5"
      const { hint, message } = describeConfigError(failure({ [setting.env]: value }))
      assert.notInclude(message, "\n")
      assert.notInclude(hint, "\n")
      assert.isTrue(message.startsWith(setting.env), message)
      assert.include(message, `expected ${setting.expected}`)
      assert.include(message, `--${setting.flag}`)
      assert.include(hint, setting.defaultText)
    }
  })

  it("give a hint line", () => {
    assert.strictEqual(
      describeConfigError(failure({ R3MES_POW_DIFFICULTY: "12" })).hint,
      "fix R3MES_POW_DIFFICULTY, or unset it (default: 20); `r3mes-miner mine --help` lists every setting"
    )
  })

  it("name a mis-checksummed address, and the hint gives its checksummed form with a warning", () => {
    const { hint, message } = describeConfigError(failure({ R3MES_REGISTRY_ADDRESS: misChecksummed }))
    assert.strictEqual(
      message,
      `R3MES_REGISTRY_ADDRESS=${misChecksummed} is invalid: expected an address whose mixed letter case is a valid ` +
        "EIP-55 checksum (flag --registry)"
    )
    assert.include(hint, `its checksummed form is ${checksummed}`)
    assert.include(hint, "check the address against its source")
    assert.include(hint, "fix R3MES_REGISTRY_ADDRESS")
    assert.notInclude(hint, "\n")
  })

  it.effect("a mis-checksummed --registry stops the CLI with exit 2 before anything starts", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(loadSettings({ registryAddress: Option.some(misChecksummed) }, {}))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      assert.strictEqual((error as { code?: number } | undefined)?.code, 2)
    }))

  it("refuse user:password@ in a WebSocket URL, with a hint", () => {
    const { hint, message } = describeConfigError(failure({ R3MES_RPC_URL: "wss://user:s3cretpass@rpc.example/ws" }))
    assert.include(message, "without user:password@")
    assert.include(hint, "https://")
    assert.notInclude(message + hint, "s3cretpass")
  })

  it("never show an URL's key, even when it is invalid", () => {
    const bad = "ftp://user:s3cretpass@rpc.example.com/v3/0123456789abcdef?apikey=zzzzzz"
    for (const source of ["env", "flag"] as const) {
      const error = source === "env" ? failure({ R3MES_RPC_URL: bad }) : failure({}, { R3MES_RPC_URL: bad })
      const { hint, message } = describeConfigError(error, { source: () => source })
      for (const text of [message, hint]) {
        for (const secret of ["s3cretpass", "0123456789abcdef", "apikey", "zzzzzz", "v3"]) assert.notInclude(text, secret)
      }
      assert.include(message, "ftp://rpc.example.com/<redacted>")
    }
    const ipfs = describeConfigError(failure({ R3MES_IPFS_API: "ws://user:s3cretpass@ipfs.example/api/v0" })).message
    assert.include(ipfs, "R3MES_IPFS_API=ws://ipfs.example/<redacted> is invalid")
  })

  it("convert to the miner's ValidationError", () => {
    const error = configValidationError(failure({ R3MES_STATS_PORT: "99999" }))
    assert.strictEqual(error._tag, "ValidationError")
    assert.strictEqual(error.field, "R3MES_STATS_PORT")
    assert.include(error.message, "R3MES_STATS_PORT=99999")
  })
})

describe("secrets", () => {
  const secrets = { R3MES_PRIVATE_KEY: validKey, R3MES_ADMIN_TOKEN: validToken }
  const assertHidden = (text: string, what: string) => {
    assert.notInclude(text, validKey.slice(2), `${what} shows the private key`)
    assert.notInclude(text, validToken, `${what} shows the admin token`)
  }

  it("never appear in the loaded config's String, JSON, inspection or printed forms", () => {
    const config = loaded(secrets)
    assertHidden(String(config.privateKey), "String")
    assertHidden(JSON.stringify(config), "JSON.stringify")
    assertHidden(inspect(config, { depth: 10 }), "util.inspect")
    assertHidden(JSON.stringify(configToJson(config)), "configToJson")
    assertHidden(settingsTable.map((s) => showSetting(s, config)).join("\n"), "showSetting")
    assert.strictEqual(configToJson(config)["R3MES_PRIVATE_KEY"], "<redacted>")
    assert.strictEqual(showSetting(minerSettings.adminToken, config), "<redacted>")
  })

  it("URLs are printed without user:password@, path and query", () => {
    const config = loaded({ R3MES_RPC_URL: secretRpcUrl, R3MES_IPFS_API: "https://proj:s3cretpass@ipfs.example:5001" })
    for (const text of [JSON.stringify(configToJson(config)), settingsTable.map((s) => showSetting(s, config)).join("\n")]) {
      for (const secret of ["s3cretpass", "0123456789abcdef", "apikey", "zzzzzz", "/v3"]) assert.notInclude(text, secret)
    }
    assert.strictEqual(configToJson(config)["R3MES_RPC_URL"], "https://rpc.example.com:8443/<redacted>")
    assert.strictEqual(showSetting(minerSettings.ipfsApi, config), "https://ipfs.example:5001/<redacted>")
    assert.strictEqual(showSetting(minerSettings.rpcUrl, loaded({ R3MES_RPC_URL: "http://10.0.0.5:8545" })), "http://10.0.0.5:8545")
    assert.strictEqual(showSetting(minerSettings.ipfsApi, loaded({})), "embedded")
    // The loaded value itself stays whole: the transport needs it.
    assert.deepStrictEqual(config.rpcUrl, Option.some(secretRpcUrl))
  })

  it("never appear in error messages, even when invalid", () => {
    const badKey = `0x${"ab".repeat(31)}zz`
    for (const [env, value] of [["R3MES_PRIVATE_KEY", badKey], ["R3MES_ADMIN_TOKEN", "leaked token"]] as const) {
      for (const source of ["env", "flag"] as const) {
        const error = source === "env" ? failure({ [env]: value }) : failure({}, { [env]: value })
        const { hint, message } = describeConfigError(error, { source: () => source })
        for (const text of [message, hint, error.message, String(error), inspect(error, { depth: 20 })]) {
          assert.notInclude(text, value.slice(4), `${env} leaked through ${source}`)
          assert.notInclude(text, "leaked", `${env} leaked through ${source}`)
        }
        assert.include(message, `is invalid: expected`)
      }
    }
  })
})

describe("fleet settings (R3MES_FLEET_DATABASE_URL, R3MES_FLEET_RUNNER)", () => {
  const password = "Fl33t-s3cret-pw"
  const databaseUrl = `postgres://r3mes:${password}@db.example:5432/r3mes`
  const otherUrl = `postgresql://miner:${password}@db2.example/fleet`

  const assertNoPassword = (text: string, what: string) => {
    assert.notInclude(text, password, `${what} shows the password`)
    assert.notInclude(text, "db.example", `${what} shows the URL`)
  }

  it("are read from the env var and from the flag, and the flag wins", () => {
    const fromEnv = loaded({ R3MES_FLEET_DATABASE_URL: databaseUrl, R3MES_FLEET_RUNNER: "gpu-1" })
    assert.strictEqual(Redacted.value(Option.getOrThrow(fromEnv.fleetDatabaseUrl)), databaseUrl)
    assert.deepStrictEqual(fromEnv.fleetRunner, Option.some("gpu-1"))

    const fromFlags = loaded({}, { R3MES_FLEET_DATABASE_URL: ` ${otherUrl} `, R3MES_FLEET_RUNNER: "gpu-2" })
    assert.strictEqual(Redacted.value(Option.getOrThrow(fromFlags.fleetDatabaseUrl)), otherUrl)
    assert.deepStrictEqual(fromFlags.fleetRunner, Option.some("gpu-2"))

    const both = loaded(
      { R3MES_FLEET_DATABASE_URL: databaseUrl, R3MES_FLEET_RUNNER: "gpu-1" },
      { R3MES_FLEET_DATABASE_URL: otherUrl, R3MES_FLEET_RUNNER: "gpu-2" }
    )
    assert.strictEqual(Redacted.value(Option.getOrThrow(both.fleetDatabaseUrl)), otherUrl)
    assert.deepStrictEqual(both.fleetRunner, Option.some("gpu-2"))
  })

  it.effect("--fleet-database-url and --fleet-runner are CLI flags over their env vars, with their sources", () =>
    Effect.gen(function*() {
      const { config, sources } = yield* loadSettings(
        { fleetDatabaseUrl: Option.some(otherUrl), fleetRunner: Option.none() },
        { R3MES_FLEET_DATABASE_URL: databaseUrl, R3MES_FLEET_RUNNER: "gpu-1" }
      )
      assert.strictEqual(Redacted.value(Option.getOrThrow(config.fleetDatabaseUrl)), otherUrl)
      assert.deepStrictEqual(config.fleetRunner, Option.some("gpu-1"))
      assert.strictEqual(sources["R3MES_FLEET_DATABASE_URL"], "flag")
      assert.strictEqual(sources["R3MES_FLEET_RUNNER"], "env")
    }))

  it("unset, the miner is a single machine and the runner takes the hostname (shown as such)", () => {
    const config = loaded({})
    assert.isTrue(Option.isNone(config.fleetDatabaseUrl))
    assert.isTrue(Option.isNone(config.fleetRunner))
    assert.strictEqual(configToJson(config)["R3MES_FLEET_DATABASE_URL"], null)
    assert.strictEqual(configToJson(config)["R3MES_FLEET_RUNNER"], null)
    assert.include(showSetting(minerSettings.fleetDatabaseUrl, config), "SQLite journal in the data dir")
    assert.include(showSetting(minerSettings.fleetRunner, config), "this machine's hostname")
    assert.include(minerSettings.fleetDatabaseUrl.description, "the fleet's shared Postgres: runners on one account share its journal and nonce ledger; unset: this machine mines alone")
    assert.include(minerSettings.fleetRunner.description, "Only meaningful with R3MES_FLEET_DATABASE_URL")
  })

  it("the URL is redacted in the printed configuration, its JSON, the config's own forms and the log redactor", () => {
    const loadedSettings = Effect.runSync(loadSettings({ fleetDatabaseUrl: Option.some(databaseUrl) }, { R3MES_FLEET_RUNNER: "gpu-1" }))
    const config = loadedSettings.config
    assertNoPassword(renderConfig(loadedSettings), "mine --print-config")
    assertNoPassword(JSON.stringify({ config: configToJson(config), sources: loadedSettings.sources }), "mine --print-config --json")
    assertNoPassword(String(config.fleetDatabaseUrl), "String")
    assertNoPassword(JSON.stringify(config), "JSON.stringify")
    assertNoPassword(inspect(config, { depth: 10 }), "util.inspect")
    assert.strictEqual(configToJson(config)["R3MES_FLEET_DATABASE_URL"], "<redacted>")
    assert.strictEqual(showSetting(minerSettings.fleetDatabaseUrl, config), "<redacted>")
    assert.match(renderConfig(loadedSettings), /R3MES_FLEET_DATABASE_URL\s+<redacted>\s+flag\s+--fleet-database-url/)
    assert.match(renderConfig(loadedSettings), /R3MES_FLEET_RUNNER\s+gpu-1\s+env\s+--fleet-runner/)

    // Logs, HTTP bodies and span events go through this redactor (secretsOf): the URL whole, as a parser rewrites
    // it, its user:password and its password alone are hidden; the host alone stays, the operator needs it.
    const redact = makeRedactor(secretsOf(config))
    const encoded = `postgres://r3mes:p%40ss%2Fword@db.example:5432/r3mes`
    const redactEncoded = makeRedactor(secretsOf(loaded({ R3MES_FLEET_DATABASE_URL: encoded })))
    assert.strictEqual(redact(`journal at ${databaseUrl} failed`), "journal at <redacted> failed")
    assert.strictEqual(redact(JSON.stringify({ url: databaseUrl })), JSON.stringify({ url: "<redacted>" }))
    assert.strictEqual(redact(`auth r3mes:${password}, password ${password}`), "auth <redacted>, password <redacted>")
    assert.strictEqual(redact("journal (postgres://r3mes@db.example:5432/r3mes): down"), "journal (postgres://r3mes@db.example:5432/r3mes): down")
    assert.strictEqual(redactEncoded(`pw p@ss/word or p%40ss%2Fword in ${encoded}`), "pw <redacted> or <redacted> in <redacted>")
  })

  it("an invalid URL is a ValidationError naming the setting, with the expected form, never the password", () => {
    const bad = ["db.example:5432/r3mes", "http://r3mes:Fl33t-s3cret-pw@db.example/r3mes", "postgres://r3mes:Fl33t/s3cret-pw@db.example/r3mes"]
    for (const value of bad) {
      for (const source of ["env", "flag"] as const) {
        const error = source === "env"
          ? failure({ R3MES_FLEET_DATABASE_URL: value })
          : failure({}, { R3MES_FLEET_DATABASE_URL: value })
        const validation = configValidationError(error)
        assert.strictEqual(validation._tag, "ValidationError")
        assert.strictEqual(validation.field, "R3MES_FLEET_DATABASE_URL")
        assert.include(validation.hint, "postgres://user:password@host:5432/r3mes")
        const { hint, message } = describeConfigError(error, { source: () => source })
        assert.include(message, source === "env" ? "R3MES_FLEET_DATABASE_URL is invalid" : "--fleet-database-url is invalid")
        assert.include(message, "expected a postgres:// or postgresql:// URL like postgres://user:password@host:5432/r3mes")
        assert.include(message, "the value is not shown because it is secret")
        for (const text of [message, hint, validation.message, validation.hint, error.message, String(error), inspect(error, { depth: 20 })]) {
          assert.notInclude(text, "Fl33t", `${value} leaked through ${source}`)
          assert.notInclude(text, "db.example", `${value} leaked through ${source}`)
        }
      }
    }
    assert.include(configValidationError(failure({ R3MES_FLEET_DATABASE_URL: bad[0]! })).hint, "does not start with postgres://")
    assert.include(configValidationError(failure({ R3MES_FLEET_DATABASE_URL: bad[2]! })).hint, "percent-encode")
  })

  it("an invalid runner name is a ValidationError naming the setting, with a hint naming the fix", () => {
    const spaced = configValidationError(failure({ R3MES_FLEET_RUNNER: "gpu 1/eu" }))
    assert.strictEqual(spaced.field, "R3MES_FLEET_RUNNER")
    assert.strictEqual(
      spaced.message,
      `R3MES_FLEET_RUNNER="gpu 1/eu" is invalid: expected 1 to 64 characters from A-Z a-z 0-9 . _ : - (flag --fleet-runner)`
    )
    assert.include(spaced.hint, `replace " ", "/"`)
    assert.include(spaced.hint, "fix R3MES_FLEET_RUNNER")
    const long = configValidationError(failure({}, { R3MES_FLEET_RUNNER: "r".repeat(65) }))
    assert.strictEqual(long.field, "R3MES_FLEET_RUNNER")
    assert.include(long.hint, "shorten it to 64 characters")
  })

  it("the default runner name is the hostname, sanitised to the allowed characters and cut to 64", () => {
    assert.strictEqual(fleetRunnerFromHostname("gpu-2.eu-west.internal"), "gpu-2.eu-west.internal")
    assert.strictEqual(fleetRunnerFromHostname("Büro PC (2)"), "B-ro-PC-2-")
    assert.strictEqual(fleetRunnerFromHostname(" host\tname "), "host-name")
    assert.strictEqual(fleetRunnerFromHostname("h".repeat(100)), "h".repeat(64))
    assert.strictEqual(fleetRunnerFromHostname(""), "runner")
    for (const host of ["Büro PC (2)", "h".repeat(100), "", "ünïcödé", hostname()]) {
      const name = fleetRunnerFromHostname(host)
      assert.deepStrictEqual(loaded({ R3MES_FLEET_RUNNER: name }).fleetRunner, Option.some(name), host)
    }
    assert.strictEqual(resolveFleetRunner(Option.none(), "Büro PC"), "B-ro-PC")
    assert.strictEqual(resolveFleetRunner(Option.some("gpu-1"), "Büro PC"), "gpu-1")
    assert.strictEqual(resolveFleetRunner(loaded({}).fleetRunner, hostname()), fleetRunnerFromHostname(hostname()))
  })
})

describe("EIP-55 (domain/eip55.ts)", () => {
  it("keccak256 equals viem's over one, two and three blocks, and checksums equal getAddress", () => {
    for (const length of [0, 1, 40, 135, 136, 137, 271, 272, 500]) {
      const data = randomBytes(length)
      assert.strictEqual(bytesToHex(keccak256(data)), viemKeccak256(data), `${length} bytes`)
    }
    for (let i = 0; i < 100; i++) {
      const address = bytesToHex(randomBytes(20))
      assert.strictEqual(checksumAddress(address), getAddress(address))
    }
    // EIP-55's own example.
    assert.strictEqual(checksumAddress("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"), "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
  })
})

describe("settingsLayer", () => {
  it.effect("provides Settings from the current ConfigProvider", () =>
    Effect.gen(function*() {
      const settings = yield* Settings
      assert.strictEqual(settings.powDifficulty, 17)
    }).pipe(
      Effect.provide(settingsLayer),
      Effect.provideService(ConfigProvider.ConfigProvider, settingsProvider({ env: { R3MES_POW_DIFFICULTY: "17" } }))
    ))

  it.effect("fails with the ConfigError when a setting is invalid", () =>
    Effect.gen(function*() {
      const error = yield* Effect.gen(function*() {
        return yield* Settings
      }).pipe(
        Effect.provide(settingsLayerFrom(settingsProvider({ env: { R3MES_MAX_RETRIES: "-1" } }))),
        Effect.flip
      )
      assert.strictEqual(formatConfigError(error), "R3MES_MAX_RETRIES=-1 is invalid: expected an integer from 0 to 100 (flag --max-retries)")
    }))
})
