import { assert, describe, it } from "@effect/vitest"
import { Option, Redacted } from "effect"
import { makeRedactor, REDACTED, redactUrl, redactUrlsIn, secretsOf, urlSecrets } from "../../src/domain/redaction.ts"
import { testMinerConfig } from "../../src/testing/testConfig.ts"
import { cliSync } from "../support/cli.ts"

const apiKey = "0123456789abcdef0123456789abcdef"
const secretUrl = `https://user:s3cretpass@rpc.example.com:8443/v3/${apiKey}?apikey=zzzzzzzzzzzzzzzzzzzz`
const secrets = ["s3cretpass", apiKey, "apikey", "zzzz", "/v3"]

const assertNoSecret = (text: string, what: string) => {
  for (const secret of secrets) assert.notInclude(text, secret, `${what} shows ${secret}`)
}

describe("redactUrl", () => {
  it("keeps scheme, host and port, and replaces user:password@, path, query and fragment by /<redacted>", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["https://user:pw@rpc.example.com/v3/abcdef?key=zz", "https://rpc.example.com/<redacted>"],
      [secretUrl, "https://rpc.example.com:8443/<redacted>"],
      ["wss://eth.example.io:8443/ws/v2/KEY", "wss://eth.example.io:8443/<redacted>"],
      ["https://user:pw@rpc.example.com", "https://rpc.example.com/<redacted>"],
      ["https://rpc.example.com/?key=zz", "https://rpc.example.com/<redacted>"],
      ["https://rpc.example.com#zz", "https://rpc.example.com/<redacted>"],
      ["http://[::1]:8545/key", "http://[::1]:8545/<redacted>"],
      // Nothing secret: as it is (a bare trailing slash dropped).
      ["http://127.0.0.1:8545", "http://127.0.0.1:8545"],
      ["http://127.0.0.1:8545/", "http://127.0.0.1:8545"],
      [" ws://localhost:8546 ", "ws://localhost:8546"],
      // Not URLs: what precedes the path, without anything up to an @.
      ["nowhere", "nowhere"],
      ["localhost:8545", "localhost:8545"],
      ["rpc.example.com/v3/KEY", "rpc.example.com/<redacted>"],
      ["user:pw@rpc.example.com", "rpc.example.com/<redacted>"],
      ["http://", "http://"],
      ["http://user:pa/ss@host/KEY", "host/<redacted>"]
    ]
    for (const [input, shown] of cases) assert.strictEqual(redactUrl(input), shown, input)
  })

  it("redactUrlsIn rewrites every URL inside a text, leaving punctuation after it", () => {
    assert.strictEqual(
      redactUrlsIn(`failed (URL: ${secretUrl}). Retried http://127.0.0.1:8545, then "wss://x.example/KEY".`),
      `failed (URL: https://rpc.example.com:8443/<redacted>). Retried http://127.0.0.1:8545, then "wss://x.example/<redacted>".`
    )
  })
})

describe("secretsOf and makeRedactor", () => {
  const config = testMinerConfig({
    privateKey: Option.some(Redacted.make(`0x${"4f".repeat(32)}`)),
    rpcUrl: Option.some(secretUrl),
    ipfsApi: "https://proj:ipfs-s3cretpass@ipfs.example:5001/api/v0"
  })
  const redact = makeRedactor(secretsOf(config))

  it("show the RPC URL, in every form viem or a parser prints it, as its redacted form", () => {
    const parsed = new URL(secretUrl)
    const withoutCredentials = new URL(secretUrl)
    withoutCredentials.username = ""
    withoutCredentials.password = ""
    for (const form of [secretUrl, parsed.href, withoutCredentials.href]) {
      assert.strictEqual(redact(`at ${form} now`), "at https://rpc.example.com:8443/<redacted> now", form)
    }
    assert.strictEqual(redact(JSON.stringify({ url: secretUrl })), JSON.stringify({ url: "https://rpc.example.com:8443/<redacted>" }))
  })

  it("hide the URL's secret parts wherever they appear alone", () => {
    const line = `POST /v3/${apiKey}?apikey=zzzzzzzzzzzzzzzzzzzz with user:s3cretpass; key ${apiKey}; pass s3cretpass`
    assert.strictEqual(redact(line), `POST ${REDACTED} with ${REDACTED}; key ${REDACTED}; pass ${REDACTED}`)
    assert.strictEqual(
      redact("ipfs https://proj:ipfs-s3cretpass@ipfs.example:5001/api/v0, pass ipfs-s3cretpass"),
      `ipfs https://ipfs.example:5001/${REDACTED}, pass ${REDACTED}`
    )
  })

  it("leave ordinary text, short path words and a secret-free URL alone", () => {
    assert.strictEqual(redact("mainnet v3 /api/v0 http://10.0.0.5:8545 user"), "mainnet v3 /api/v0 http://10.0.0.5:8545 user")
    assert.deepStrictEqual(urlSecrets("http://10.0.0.5:8545"), [])
    assert.deepStrictEqual(urlSecrets("embedded"), [])
  })

  it("a plain secret wins over the same text masked", () => {
    const redactBoth = makeRedactor([{ secret: "abc-secret", shownAs: "shown" }, "abc-secret"])
    assert.strictEqual(redactBoth("x abc-secret"), "x <redacted>")
  })
})


const cli = (args: ReadonlyArray<string>) => {
  const run = cliSync(args, { timeoutMs: 20_000 })
  return { status: run.status, output: run.stdout + run.stderr, stdout: run.stdout }
}

describe("r3mes-miner mine --print-config with a secret RPC URL", () => {
  const registry = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

  it("text and --json show scheme, host and port only", () => {
    const text = cli(["mine", "--print-config", "--rpc-url", secretUrl, "--registry", registry])
    assert.strictEqual(text.status, 0, text.output)
    assertNoSecret(text.output, "--print-config")
    assert.match(text.stdout, /R3MES_RPC_URL\s+https:\/\/rpc\.example\.com:8443\/<redacted>\s+flag/)

    const json = cli(["mine", "--print-config", "--json", "--rpc-url", secretUrl, "--registry", registry])
    assert.strictEqual(json.status, 0, json.output)
    assertNoSecret(json.output, "--print-config --json")
    const printed = JSON.parse(json.stdout) as { config: Record<string, unknown> }
    assert.strictEqual(printed.config["R3MES_RPC_URL"], "https://rpc.example.com:8443/<redacted>")
    assert.strictEqual(printed.config["R3MES_REGISTRY_ADDRESS"], registry)
  })

  it("an invalid one is refused with exit 2, still without its secrets", () => {
    const run = cli(["mine", "--print-config", "--rpc-url", secretUrl.replace("https:", "ftp:"), "--registry", registry])
    assert.strictEqual(run.status, 2, run.output)
    assertNoSecret(run.output, "the error")
    assert.include(run.output, "--rpc-url ftp://rpc.example.com:8443/<redacted> is invalid")
  })
})
