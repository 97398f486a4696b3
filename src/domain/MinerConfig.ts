import type { Duration, Option, Redacted } from "effect"

/** R3MES_DEVICE (DESIGN.md "Compute devices"): a device training runs on, or "auto" (the best that initialises). */
export const computeDevices = ["auto", "cpu", "cuda", "webgpu"] as const
export type ComputeDevice = (typeof computeDevices)[number]

/**
 * The miner's validated configuration (DESIGN.md "Configuration"). Loaded from env vars and CLI flags by
 * `minerConfig` (src/domain/MinerConfigSchema.ts, one descriptor per setting); flags win over env.
 */
export interface MinerConfig {
  readonly transactionTimeout: Duration.Duration
  readonly maxRetries: number
  /** 16..32 */
  readonly powDifficulty: number
  readonly retryInitialDelay: Duration.Duration
  readonly retryMaxDelay: Duration.Duration
  readonly retryBackoffFactor: number
  readonly maxGradientSizeMb: number
  readonly maxActiveTransactions: number
  readonly circuitBreakerThreshold: number
  readonly circuitBreakerReset: Duration.Duration
  /** Consecutive non-retryable transaction failures after which the miner stops (exit 1); they back off until then. */
  readonly maxConsecutiveFailures: number
  readonly privateKey: Option.Option<Redacted.Redacted<string>>
  /** http(s):// or ws(s)://; may carry an API key, so it is shown only through `redactUrl`. */
  readonly rpcUrl: Option.Option<string>
  /** As written: lower case, upper case, or mixed case with a valid EIP-55 checksum. */
  readonly registryAddress: Option.Option<string>
  /** `embedded` or a Kubo RPC URL (shown only through `redactUrl`, like the RPC URL). */
  readonly ipfsApi: string
  /**
   * Peers of the embedded IPFS node (multiaddrs ending in /p2p/<peer id>), dialled and kept connected so content
   * they pinned can be fetched over bitswap; empty: none.
   */
  readonly ipfsPeers: ReadonlyArray<string>
  /** Multiaddr the embedded IPFS node listens on (/ip4/…/tcp/PORT); none: it listens nowhere. */
  readonly ipfsListen: Option.Option<string>
  /** The compute device training runs on: "auto" (default), "cpu", "cuda" or "webgpu". */
  readonly device: ComputeDevice
  readonly dataDir: string
  readonly statsHost: string
  readonly statsPort: number
  readonly adminToken: Option.Option<Redacted.Redacted<string>>
  readonly logFile: string
  /** Fraction (0..1) of submissions the verifier recomputes, chosen deterministically per (round, chunk, verifier). */
  readonly verifySample: number
  /** Largest relative L2 distance per tensor (and relative loss difference) accepted across determinism profiles. */
  readonly verifyTolerance: number
  /** How long the verifier tries to obtain a submission's content before `rejected_unavailable`. */
  readonly verifyWindow: Duration.Duration
  /**
   * The fleet's shared Postgres (DESIGN.md "Fleet"), `postgres://user:password@host:5432/db`: secret like the private
   * key (its password). None: single-machine mode, the SQLite journal in the data dir.
   */
  readonly fleetDatabaseUrl: Option.Option<Redacted.Redacted<string>>
  /**
   * This runner's name in the fleet, owner of the transactions it starts (1-64 of A-Z a-z 0-9 . _ : -). None: the
   * machine's hostname, which the domain cannot read: `resolveFleetRunner(config.fleetRunner, os.hostname())`.
   */
  readonly fleetRunner: Option.Option<string>
  /**
   * Where the other runners reach this one (host:port), as a runner of Effect's cluster hosting the account's signer
   * entity. None: every runner signs through the nonce ledger itself.
   */
  readonly fleetAddress: Option.Option<string>
  /** Runner names that may host the account's signer; empty: every runner. */
  readonly fleetSigners: ReadonlyArray<string>
  /** How long a silent runner keeps the signer (its cluster shards) before another takes it. */
  readonly fleetLease: Duration.Duration
}

export const maxGradientBytes = (config: Pick<MinerConfig, "maxGradientSizeMb">): number =>
  Math.floor(config.maxGradientSizeMb * 1024 * 1024)
