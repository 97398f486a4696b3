import { Config, Effect, Option, Schema, SchemaIssue } from "effect"
import { type ComputeDevice, computeDevices, type MinerConfig } from "./MinerConfig.ts"
import { redactUrl } from "./redaction.ts"
import {
  type AnySetting,
  invalid,
  number,
  optionalText,
  secretText,
  seconds,
  type Setting,
  type Spec,
  text
} from "./settingKinds.ts"
import {
  address,
  hasProtocol,
  intAtLeast,
  intBetween,
  nonBlank,
  noWhitespace,
  rpcSchemes,
  rpcUrl
} from "./settingValues.ts"
import { measuredCpuWebgpuDistanceWithoutTies, measuredHonestDistanceWithoutTies } from "./verificationTolerance.ts"

/**
 * Default of R3MES_VERIFY_TOLERANCE: ×10 the largest honest distance measured across the profiles a verifier cannot
 * reproduce, CPU profiles and CPU ↔ WebGPU alike, on chunks without a ReLU tie (verificationTolerance.ts, with the
 * measurement: 1.62e-5, WebGPU on bitnet-lora). It recomputes with the submitter's thread count, optimisation level
 * and (when it has it) provider, which removes most ties (1.42e-2); ×10 those would accept the closest cheater
 * (2.67e-2). Rounded to drop the binary noise of the product (0.000162 in --help and the README).
 */
export const defaultVerifyTolerance = Number(
  (Math.max(measuredHonestDistanceWithoutTies, measuredCpuWebgpuDistanceWithoutTies) * 10).toPrecision(12)
)

/**
 * Default of R3MES_LOG_FILE, resolved against R3MES_DATA_DIR once both are read (`resolveLogFile`): a default
 * relative to the working directory made two miners with different data dirs write one log.
 */
export const dataDirLogFile = "<data dir>/logs/miner.log"

/** R3MES_LOG_FILE with its default placed in the data dir; an explicit value keeps its meaning. */
export const resolveLogFile = (logFile: string, dataDir: string): string =>
  logFile === dataDirLogFile ? `${dataDir.replace(/\/+$/, "")}/logs/miner.log` : logFile

/** A host that only this machine reaches: 127.0.0.0/8, ::1 (bracketed or not), localhost. */
export const isLoopbackHost = (host: string): boolean => {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1")
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || h === "0:0:0:0:0:0:0:1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h)
}

/**
 * The warning a miner logs at start when R3MES_STATS_HOST is not a loopback address (one line, then `hint:`), or
 * undefined: the statistics and transactions (chunks, CIDs, errors) are readable by anyone who reaches the port.
 */
export const exposedApiWarning = (host: string, url: string): string | undefined =>
  isLoopbackHost(host) ? undefined : `the monitoring API at ${url} (--stats-host ${host}) is reachable from the network: ` +
    "anyone who reaches it reads the statistics and transactions (admin routes still need R3MES_ADMIN_TOKEN)\n" +
    "hint: keep --stats-host 127.0.0.1 (the default) and reach it over SSH, or put it behind a firewall or an " +
    "authenticating reverse proxy"

/**
 * Multiaddrs of the embedded IPFS node. Only TCP is configured (DESIGN.md "Content reachability": processes on one
 * machine or network), so an address it could never dial is refused here, not found unreachable later. Checked by
 * pattern: the multiaddr library costs ~180 ms of loading that every command would pay.
 */
const ipHost = String.raw`/ip4/(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)|/ip6/[0-9a-fA-F:.]*:[0-9a-fA-F:.]*`
const tcpPort = String.raw`/tcp/(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}|0)`
/** A libp2p peer id: base58btc (Qm…, 12D3KooW…) or a CIDv1 in base32 (bafz…). */
const peerId = String.raw`/p2p/(?:[1-9A-HJ-NP-Za-km-z]{46,}|b[a-z2-7]{50,})`
const listenPattern = new RegExp(`^(?:${ipHost})${tcpPort}$`)
const peerPattern = new RegExp(String.raw`^(?:${ipHost}|/dns[46]?/[A-Za-z0-9.-]+)${tcpPort}${peerId}$`)

const peerExample = "/ip4/127.0.0.1/tcp/4011/p2p/12D3KooW…"

/** The entries of R3MES_IPFS_PEERS, trimmed, without empty ones or repeats. */
const peerEntries = (raw: string): ReadonlyArray<string> => [
  ...new Set(raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== ""))
]

const ipfsPeersSpec: Spec = {
  env: "R3MES_IPFS_PEERS",
  flag: "ipfs-peers",
  metavar: "MULTIADDRS",
  description: "Peers the embedded IPFS node dials and keeps connected (redialled when they drop), to fetch what " +
    "they pinned over bitswap, like Kubo's Peering.Peers; fetched content is checked against its CID. No DHT, no " +
    "public bootstrap, no mDNS: only these peers",
  expected: `comma-separated multiaddrs over TCP, each ending in /p2p/ and a peer id, like ${peerExample}`,
  defaultText: "none"
}

/** Names the first entry that is not a dialable peer multiaddr, and why, as configErrors.ts shows it. */
const peersCodec = Schema.String.check(Schema.makeFilter((input: string) => {
  const bad = peerEntries(input).find((entry) => !peerPattern.test(entry))
  if (bad === undefined) return undefined
  return new SchemaIssue.InvalidValue({
    expected: `${ipfsPeersSpec.expected}; ${JSON.stringify(bad)} is not one`,
    hint: bad.includes("/p2p/")
      ? "only /ip4, /ip6 or /dns addresses over /tcp can be dialled; copy the peer id as the other node prints it"
      : "each peer needs its /p2p/<peer id>: copy the address the other node prints, not only its host and port"
  }, input, { reportInput: true })
}))

/** R3MES_IPFS_PEERS: a list, which no setting kind of settingKinds.ts holds; decoded like `text`, then split. */
const ipfsPeers: Setting<"ipfsPeers"> = {
  ...ipfsPeersSpec,
  key: "ipfsPeers",
  unit: undefined,
  secret: false,
  shown: undefined,
  config: Config.String(ipfsPeersSpec.env).pipe(
    Config.mapEffect((raw) =>
      Schema.decodeUnknownEffect(peersCodec)(raw.trim()).pipe(
        Effect.map(peerEntries),
        Effect.mapError((error) =>
          invalid(ipfsPeersSpec.env, new SchemaIssue.Encoding(peersCodec.ast, error.issue, raw, { reportInput: true }))
        )
      )
    ),
    Config.withDefault<ReadonlyArray<string>>([])
  ),
  toJson: (value) => (value.length === 0 ? null : value.join(","))
}

/** The form of R3MES_FLEET_DATABASE_URL that its messages show. */
export const fleetDatabaseUrlExample = "postgres://user:password@host:5432/r3mes"

const fleetDatabaseUrlExpected = `a postgres:// or postgresql:// URL like ${fleetDatabaseUrlExample}`

/**
 * R3MES_FLEET_DATABASE_URL: parsed as the journal's `pgTarget` parses it, so a URL accepted here is never refused
 * when the fleet opens its pool. Its issue never carries the input: it may hold the password.
 */
const fleetDatabaseUrlCodec = Schema.String.check(Schema.makeFilter((input: string) => {
  const refused = (hint: string) => new SchemaIssue.InvalidValue({ expected: fleetDatabaseUrlExpected, hint })
  // `postgres:` alone parses as an URL; without `//` there is no host to reach.
  if (!/^postgres(?:ql)?:\/\//i.test(input)) {
    return refused(`it does not start with postgres:// or postgresql://; write it as ${fleetDatabaseUrlExample}`)
  }
  try {
    new URL(input)
    return undefined
  } catch {
    return refused(
      `it starts like one but is not a URL: check the port, and percent-encode / ? # @ in the user or password ` +
        `(%2F %3F %23 %40), as in ${fleetDatabaseUrlExample}`
    )
  }
}))

/** The characters of a fleet runner's name: what stays readable in a journal row, a log line and a SQL column. */
const runnerNameCharacters = /[A-Za-z0-9._:-]/
const runnerNameLength = 64
const fleetRunnerExpected = `1 to ${runnerNameLength} characters from A-Z a-z 0-9 . _ : -`

const fleetRunnerCodec = Schema.String.check(Schema.makeFilter((input: string) => {
  const others = [...new Set([...input].filter((c) => !runnerNameCharacters.test(c)))]
  const hint = others.length > 0
    ? `replace ${others.map((c) => JSON.stringify(c)).join(", ")} (by - for instance), as in miner-01 or gpu-2.eu-west`
    : input.length > runnerNameLength
    ? `shorten it to ${runnerNameLength} characters`
    : input.length === 0
    ? "give it a name, or unset it"
    : undefined
  return hint === undefined
    ? undefined
    : new SchemaIssue.InvalidValue({ expected: fleetRunnerExpected, hint }, input, { reportInput: true })
}))

/**
 * The default of R3MES_FLEET_RUNNER from this machine's hostname (`os.hostname()`, passed in: the domain reads no
 * OS): each run of characters a runner name cannot hold becomes `-`, cut to 64 characters; an empty hostname
 * gives `runner`. Two runners on one machine get the same name this way, which is why the setting exists.
 */
export const fleetRunnerFromHostname = (hostname: string): string => {
  const name = hostname.trim().replace(/[^A-Za-z0-9._:-]+/g, "-").slice(0, runnerNameLength)
  return name === "" ? "runner" : name
}

/** This runner's name: R3MES_FLEET_RUNNER when set, else the default from `hostname` (`fleetRunnerFromHostname`). */
export const resolveFleetRunner = (fleetRunner: Option.Option<string>, hostname: string): string =>
  Option.getOrElse(fleetRunner, () => fleetRunnerFromHostname(hostname))

/** R3MES_FLEET_ADDRESS: host:port, an IPv6 host in brackets (what clusterRunner.ts `parseRunnerAddress` reads). */
const fleetAddressPattern = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})$/

const fleetSignersSpec: Spec = {
  env: "R3MES_FLEET_SIGNERS",
  flag: "fleet-signers",
  metavar: "NAMES",
  description: "Runners that may host the account's signer (with R3MES_FLEET_ADDRESS): the signer moves only among " +
    "these. Give every runner the same list",
  expected: `comma-separated runner names, each ${fleetRunnerExpected}`,
  defaultText: "every runner"
}

const runnerNames = (raw: string): ReadonlyArray<string> => [
  ...new Set(raw.split(",").map((entry) => entry.trim()).filter((entry) => entry !== ""))
]

/** Names the first entry that is not a runner name, and why. */
const fleetSignersCodec = Schema.String.check(Schema.makeFilter((input: string) => {
  for (const name of runnerNames(input)) {
    const bad = Schema.decodeUnknownExit(fleetRunnerCodec)(name)
    if (bad._tag === "Failure") {
      return new SchemaIssue.InvalidValue({
        expected: `${fleetSignersSpec.expected}; ${JSON.stringify(name)} is not one`,
        hint: "write the names as each runner's R3MES_FLEET_RUNNER, separated by commas, as in gpu-1,gpu-2"
      }, input, { reportInput: true })
    }
  }
  return undefined
}))

/** R3MES_FLEET_SIGNERS: a list, decoded like R3MES_IPFS_PEERS; every entry is a runner name. */
const fleetSigners: Setting<"fleetSigners"> = {
  ...fleetSignersSpec,
  key: "fleetSigners",
  unit: undefined,
  secret: false,
  shown: undefined,
  config: Config.String(fleetSignersSpec.env).pipe(
    Config.mapEffect((raw) =>
      Schema.decodeUnknownEffect(fleetSignersCodec)(raw.trim()).pipe(
        Effect.map(runnerNames),
        Effect.mapError((error) =>
          invalid(fleetSignersSpec.env, new SchemaIssue.Encoding(fleetSignersCodec.ast, error.issue, raw, { reportInput: true }))
        )
      )
    ),
    Config.withDefault<ReadonlyArray<string>>([])
  ),
  toJson: (value) => (value.length === 0 ? null : value.join(","))
}

/**
 * The table of the miner's settings (DESIGN.md "Configuration"). Order = the order of DESIGN.md, of `--help`, of the
 * printed configuration and of the README. Add a setting here and loading, flags, messages and the README follow.
 */

/** Every setting by its `MinerConfig` field; the mapped type makes a missing or extra setting a type error. */
export const minerSettings: { readonly [K in keyof MinerConfig]: Setting<K> } = {
  transactionTimeout: seconds("transactionTimeout", {
    env: "R3MES_TRANSACTION_TIMEOUT",
    flag: "transaction-timeout",
    metavar: "SECONDS",
    description:
      "Time limit of a mining transaction until its signed submission is journaled; past it, the transaction is rolled back. A submission already signed is never undone by the timeout: the chain decides",
    expected: "a number of seconds greater than 0",
    defaultText: "300"
  }, 300),
  maxRetries: number("maxRetries", {
    env: "R3MES_MAX_RETRIES",
    flag: "max-retries",
    metavar: "N",
    description: "Retries of a step after a retryable failure (network, timeout, transient chain or IPFS error)",
    expected: "an integer from 0 to 100",
    defaultText: "3"
  }, intBetween(0, 100), 3),
  powDifficulty: number("powDifficulty", {
    env: "R3MES_POW_DIFFICULTY",
    flag: "difficulty",
    metavar: "BITS",
    description: "Proof-of-work difficulty in leading zero bits; a round's own difficulty is a floor",
    expected: "an integer from 16 to 32",
    defaultText: "20"
  }, intBetween(16, 32), 20),
  retryInitialDelay: seconds("retryInitialDelay", {
    env: "R3MES_RETRY_INITIAL_DELAY",
    flag: "retry-initial-delay",
    metavar: "SECONDS",
    description: "First delay of the exponential, jittered retry back-off",
    expected: "a number of seconds greater than 0",
    defaultText: "1.0"
  }, 1),
  retryMaxDelay: seconds("retryMaxDelay", {
    env: "R3MES_RETRY_MAX_DELAY",
    flag: "retry-max-delay",
    metavar: "SECONDS",
    description: "Cap on any single retry delay",
    expected: "a number of seconds greater than 0, not less than R3MES_RETRY_INITIAL_DELAY",
    defaultText: "60.0"
  }, 60),
  retryBackoffFactor: number("retryBackoffFactor", {
    env: "R3MES_RETRY_BACKOFF_FACTOR",
    flag: "retry-backoff-factor",
    metavar: "FACTOR",
    description: "Multiplier between consecutive retry delays",
    expected: "a number of at least 1",
    defaultText: "2.0"
  }, Schema.FiniteFromString.check(Schema.isGreaterThanOrEqualTo(1)), 2),
  maxGradientSizeMb: number("maxGradientSizeMb", {
    env: "R3MES_MAX_GRADIENT_SIZE_MB",
    flag: "max-gradient-size-mb",
    metavar: "MB",
    description: "Largest gradient accepted, in MiB; a larger one is refused before any upload",
    expected: "a number of MiB greater than 0",
    defaultText: "100"
  }, Schema.FiniteFromString.check(Schema.isGreaterThan(0)), 100, "MiB"),
  maxActiveTransactions: number("maxActiveTransactions", {
    env: "R3MES_MAX_ACTIVE_TRANSACTIONS",
    flag: "max-active-transactions",
    metavar: "N",
    description: "Transactions in flight at once; one more is refused",
    expected: "an integer of at least 1",
    defaultText: "10"
  }, intAtLeast(1), 10),
  circuitBreakerThreshold: number("circuitBreakerThreshold", {
    env: "R3MES_CIRCUIT_BREAKER_THRESHOLD",
    flag: "circuit-breaker-threshold",
    metavar: "N",
    description: "Consecutive retryable failures of the chain or IPFS that open its circuit breaker",
    expected: "an integer of at least 1",
    defaultText: "5"
  }, intAtLeast(1), 5),
  circuitBreakerReset: seconds("circuitBreakerReset", {
    env: "R3MES_CIRCUIT_BREAKER_RESET",
    flag: "circuit-breaker-reset",
    metavar: "SECONDS",
    description: "Wait of an open circuit breaker before it lets a trial call through",
    expected: "a number of seconds greater than 0",
    defaultText: "30"
  }, 30),
  maxConsecutiveFailures: number("maxConsecutiveFailures", {
    env: "R3MES_MAX_CONSECUTIVE_FAILURES",
    flag: "max-consecutive-failures",
    metavar: "N",
    description: "Consecutive non-retryable transaction failures (a gradient over the size limit, an unfunded account) " +
      "after which the miner stops with exit 1 and the cause; before that each one backs off exponentially",
    expected: "an integer of at least 1",
    defaultText: "10"
  }, intAtLeast(1), 10),
  privateKey: secretText("privateKey", {
    env: "R3MES_PRIVATE_KEY",
    flag: "private-key",
    metavar: "HEX",
    description: "Key of the miner's account, never printed; prefer the env var (command lines are visible to others)",
    expected: "0x followed by 64 hex digits",
    defaultText: "devnet key when on the devnet"
  }, Schema.String.check(Schema.isPattern(/^0x[0-9a-fA-F]{64}$/))),
  rpcUrl: optionalText("rpcUrl", {
    env: "R3MES_RPC_URL",
    flag: "rpc-url",
    metavar: "URL",
    description: "JSON-RPC endpoint of the chain (HTTP or WebSocket); without it the miner starts an embedded devnet. " +
      "Printed without user:password@, path and query, which may hold an API key",
    expected: rpcSchemes,
    defaultText: "embedded devnet",
    shown: redactUrl
  }, rpcUrl),
  registryAddress: optionalText("registryAddress", {
    env: "R3MES_REGISTRY_ADDRESS",
    flag: "registry",
    metavar: "ADDRESS",
    description: "Address of the MiningRegistry contract; in mixed case its EIP-55 checksum is checked",
    expected: "0x followed by 40 hex digits",
    defaultText: "deployed on the devnet"
  }, address),
  ipfsApi: text("ipfsApi", {
    env: "R3MES_IPFS_API",
    flag: "ipfs",
    metavar: "API",
    description: "Where gradients are pinned: the embedded IPFS node or a Kubo daemon's RPC API",
    expected: "`embedded` or an http:// or https:// URL",
    defaultText: "embedded",
    shown: (value) => (value === "embedded" ? value : redactUrl(value))
  }, Schema.String.check(Schema.makeFilter((s: string) => s === "embedded" || hasProtocol(["http:", "https:"])(s), {
    expected: "`embedded` or an http:// or https:// URL"
  })), "embedded"),
  ipfsPeers,
  ipfsListen: optionalText("ipfsListen", {
    env: "R3MES_IPFS_LISTEN",
    flag: "ipfs-listen",
    metavar: "MULTIADDR",
    description: "Address the embedded IPFS node listens on for its peers (port 0: any free port); its full " +
      "address, ending in /p2p/ and its peer id, is what other nodes put in R3MES_IPFS_PEERS. Without it and " +
      "without peers the node opens no socket",
    expected: "a multiaddr like /ip4/127.0.0.1/tcp/4011",
    defaultText: "none (not listening)"
  }, Schema.String.check(Schema.isPattern(listenPattern, { expected: "a multiaddr like /ip4/127.0.0.1/tcp/4011" }))),
  device: text("device", {
    env: "R3MES_DEVICE",
    flag: "device",
    metavar: "DEVICE",
    description: "Compute device of the training: auto takes CUDA when it initialises, WebGPU when it initialises and " +
      "steps no slower than the CPU, else the CPU (tried once at start, the choice logged); an explicit device that " +
      "cannot start stops the miner at start. `r3mes-miner devices` shows what each would do",
    expected: `one of ${computeDevices.join(", ")}`,
    defaultText: "auto"
  }, Schema.String.check(Schema.isPattern(new RegExp(`^(?:${computeDevices.join("|")})$`), {
    expected: `one of ${computeDevices.join(", ")}`
  })) as Schema.Codec<ComputeDevice, string>, "auto"),
  dataDir: text("dataDir", {
    env: "R3MES_DATA_DIR",
    flag: "data-dir",
    metavar: "DIR",
    description: "Directory of the journal, the embedded IPFS repository and the devnet state",
    expected: "a non-empty path",
    defaultText: "./.r3mes"
  }, nonBlank, "./.r3mes"),
  statsHost: text("statsHost", {
    env: "R3MES_STATS_HOST",
    flag: "stats-host",
    metavar: "HOST",
    description: "Interface the monitoring HTTP API listens on",
    expected: "a host name or IP address without spaces",
    defaultText: "127.0.0.1"
  }, noWhitespace, "127.0.0.1"),
  statsPort: number("statsPort", {
    env: "R3MES_STATS_PORT",
    flag: "stats-port",
    metavar: "PORT",
    description: "Port of the monitoring HTTP API (0: any free port)",
    expected: "an integer from 0 to 65535",
    defaultText: "8080"
  }, intBetween(0, 65535), 8080),
  adminToken: secretText("adminToken", {
    env: "R3MES_ADMIN_TOKEN",
    flag: "admin-token",
    metavar: "TOKEN",
    description: "Bearer token of the admin routes (POST /cleanup-stale), never printed",
    expected: "a string without spaces",
    defaultText: "none (admin routes refuse)"
  }, noWhitespace),
  logFile: text("logFile", {
    env: "R3MES_LOG_FILE",
    flag: "log-file",
    metavar: "FILE",
    description: "File of the JSON log lines, one per state change; by default in the data dir, so miners with " +
      "different data dirs never share one log (a relative path is relative to the working directory)",
    expected: "a non-empty path",
    defaultText: dataDirLogFile
  }, nonBlank, dataDirLogFile),
  verifySample: number("verifySample", {
    env: "R3MES_VERIFY_SAMPLE",
    flag: "verify-sample",
    metavar: "FRACTION",
    description: "Fraction of submissions the verifier recomputes (0 records no verdict, 1 checks every one); " +
      "the choice is a hash of (round, chunk, verifier), so a restart decides the same",
    expected: "a number from 0 to 1",
    defaultText: "1.0"
  }, Schema.FiniteFromString.check(Schema.isBetween({ minimum: 0, maximum: 1 })), 1),
  verifyTolerance: number("verifyTolerance", {
    env: "R3MES_VERIFY_TOLERANCE",
    flag: "verify-tolerance",
    metavar: "RATIO",
    description: "Largest relative L2 distance of a tensor (and relative difference of a loss) the verifier accepts " +
      "from a miner with another determinism profile; the same profile must match bit for bit",
    expected: "a number of at least 0",
    defaultText: String(defaultVerifyTolerance)
  }, Schema.FiniteFromString.check(Schema.isGreaterThanOrEqualTo(0)), defaultVerifyTolerance),
  verifyWindow: seconds("verifyWindow", {
    env: "R3MES_VERIFY_WINDOW",
    flag: "verify-window",
    metavar: "SECONDS",
    description: "How long after a submission's block the verifier keeps trying to fetch its content before recording " +
      "rejected_unavailable",
    expected: "a number of seconds greater than 0",
    defaultText: "120"
  }, 120),
  fleetDatabaseUrl: secretText("fleetDatabaseUrl", {
    env: "R3MES_FLEET_DATABASE_URL",
    flag: "fleet-database-url",
    metavar: "URL",
    description: "URL of the fleet's shared Postgres: runners on one account share its journal and nonce ledger; " +
      "unset: this machine mines alone (SQLite journal in the data dir). Never printed, since it holds the " +
      "password; prefer the env var (command lines are visible to others)",
    expected: fleetDatabaseUrlExpected,
    defaultText: "none (single machine: SQLite journal in the data dir)"
  }, fleetDatabaseUrlCodec),
  fleetRunner: optionalText("fleetRunner", {
    env: "R3MES_FLEET_RUNNER",
    flag: "fleet-runner",
    metavar: "NAME",
    description: "This runner's name in the fleet: the owner of the transactions it starts; a runner restarted " +
      "under the same name recovers its own, so keep it across restarts and give each runner its own (set it when " +
      "two share a machine). Only meaningful with R3MES_FLEET_DATABASE_URL",
    expected: fleetRunnerExpected,
    defaultText: `this machine's hostname (other characters as -, cut to ${runnerNameLength})`
  }, fleetRunnerCodec),
  fleetAddress: optionalText("fleetAddress", {
    env: "R3MES_FLEET_ADDRESS",
    flag: "fleet-address",
    metavar: "HOST:PORT",
    description: "Where the fleet's other runners reach this one (it listens on that port): the runners then form " +
      "Effect's cluster on the fleet's Postgres, and the account's signer runs on one of them and signs every " +
      "runner's transactions; unset: this runner signs for itself through the nonce ledger (the ledger still fences " +
      "it from the signer, but the two race for nonces: set it on every runner or on none). Only meaningful with " +
      "R3MES_FLEET_DATABASE_URL",
    expected: "host:port, like 10.0.0.5:34431 ([::1]:34431 for IPv6)",
    defaultText: "none (each runner signs for itself)"
  }, Schema.String.check(Schema.isPattern(fleetAddressPattern, { expected: "host:port, like 10.0.0.5:34431" }))),
  fleetSigners,
  fleetLease: seconds("fleetLease", {
    env: "R3MES_FLEET_LEASE",
    flag: "fleet-lease",
    metavar: "SECONDS",
    description: "How long a runner that stopped answering keeps the account's signer before another runner of " +
      "R3MES_FLEET_SIGNERS takes it over (with R3MES_FLEET_ADDRESS): the fleet's writes wait that long after the " +
      "signer's runner dies. Give every runner the same",
    expected: "a number of seconds greater than 0",
    defaultText: "35"
  }, 35)
}

/** The settings in table order. */
export const settingsTable: ReadonlyArray<AnySetting> = Object.values(minerSettings)

export const settingByEnv = (env: string): AnySetting | undefined => settingsTable.find((s) => s.env === env)

export const settingByFlag = (flag: string): AnySetting | undefined =>
  settingsTable.find((s) => s.flag === flag.replace(/^--/, ""))
