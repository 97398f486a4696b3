import { Schema, SchemaIssue } from "effect"
import { checksumAddress, claimsChecksum } from "./eip55.ts"

/**
 * The value codecs of the settings table (minerSettings.ts): string in, typed value out. A failed check keeps the
 * rejected input so configErrors.ts can show it; `rule` lets a check say what was expected and how to fix it.
 */

export const positiveSeconds = Schema.FiniteFromString.check(Schema.isGreaterThan(0))
export const intBetween = (minimum: number, maximum: number) =>
  Schema.FiniteFromString.check(Schema.isInt(), Schema.isBetween({ minimum, maximum }))
export const intAtLeast = (minimum: number) => Schema.FiniteFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(minimum))

export const hasProtocol = (protocols: ReadonlyArray<string>) => (input: string): boolean => {
  try {
    const url = new URL(input)
    return protocols.includes(url.protocol) && url.hostname !== ""
  } catch {
    return false
  }
}

/**
 * A check whose failure carries its own `expected` and, optionally, a `hint` that `describeConfigError` puts in
 * front of the setting's general hint.
 */
const rule = (problem: (input: string) => { readonly expected: string; readonly hint?: string } | undefined) =>
  Schema.makeFilter((input: string) => {
    const found = problem(input)
    return found === undefined ? undefined : new SchemaIssue.InvalidValue(found, input, { reportInput: true })
  })

export const rpcSchemes = "an http://, https://, ws:// or wss:// URL"

/** viem's http transport turns user:password@ into Basic auth; Node's WebSocket silently drops it (checked). */
export const rpcUrl = Schema.String.check(
  Schema.makeFilter(hasProtocol(["http:", "https:", "ws:", "wss:"]), { expected: rpcSchemes }),
  rule((input) => {
    let url: URL
    try {
      url = new URL(input)
    } catch {
      return undefined // the scheme check above reports it
    }
    if ((url.protocol !== "ws:" && url.protocol !== "wss:") || (url.username === "" && url.password === "")) return undefined
    return {
      expected: "a ws:// or wss:// URL without user:password@, which the WebSocket client does not send",
      hint: "put the key where the provider documents it (usually the path), or use its https:// URL, where user:password@ works"
    }
  })
)

/** EIP-55: a mixed-case address claims a checksum, and a wrong one means a mistyped or altered address. */
export const address = Schema.String.check(
  Schema.isPattern(/^0x[0-9a-fA-F]{40}$/),
  rule((input) =>
    !claimsChecksum(input) || checksumAddress(input) === input ? undefined : {
      expected: "an address whose mixed letter case is a valid EIP-55 checksum",
      hint: `check the address against its source (a wrong digit or changed letter case breaks the checksum); if its ` +
        `digits are right, its checksummed form is ${checksumAddress(input)}`
    }
  )
)
export const nonBlank = Schema.String.check(Schema.isPattern(/\S/, { expected: "a non-empty string" }))
export const noWhitespace = Schema.String.check(Schema.isPattern(/^\S+$/, { expected: "a string without whitespace" }))
