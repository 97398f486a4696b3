import { Schema } from "effect"

/**
 * The monitoring API's error answers. Every one is JSON `{ error, message, ... }` with its HTTP status: `error` is a
 * stable code a script can branch on, `message` says what was wrong and how to ask instead. They are schema classes
 * (not tagged: the wire shape predates this description and clients read `error`), so the server encodes them and
 * the derived client decodes them from the same definitions.
 */

/** A malformed query, path or body: `message` is the schema's own message for the first thing it refused. */
export class BadRequest extends Schema.Error<BadRequest>("BadRequest")({
  /** e.g. `invalid_state`, `invalid_limit`, `invalid_max_age`, `invalid_body`, `invalid_parameter`. */
  error: Schema.String,
  message: Schema.String
}, { httpApiStatus: 400 }) {}

/** An admin route without the right bearer token, or with no admin token configured (`admin_disabled`). */
export class Unauthorized extends Schema.Error<Unauthorized>("Unauthorized")({
  error: Schema.Literals(["unauthorized", "admin_disabled"]),
  message: Schema.String
}, { httpApiStatus: 401 }) {}

export class TransactionNotFound extends Schema.Error<TransactionNotFound>("TransactionNotFound")({
  error: Schema.tag("not_found"),
  message: Schema.String,
  transaction_id: Schema.String
}, { httpApiStatus: 404 }) {}

/** No route has this path: `routes` lists the ones there are. */
export class RouteNotFound extends Schema.Error<RouteNotFound>("RouteNotFound")({
  error: Schema.tag("not_found"),
  message: Schema.String,
  routes: Schema.Array(Schema.String)
}, { httpApiStatus: 404 }) {}

/** A known path asked with another method; the answer carries an `allow` header too. */
export class MethodNotAllowed extends Schema.Error<MethodNotAllowed>("MethodNotAllowed")({
  error: Schema.tag("method_not_allowed"),
  message: Schema.String,
  allowed: Schema.Array(Schema.String)
}, { httpApiStatus: 405 }) {}

export class PayloadTooLarge extends Schema.Error<PayloadTooLarge>("PayloadTooLarge")({
  error: Schema.tag("body_too_large"),
  message: Schema.String
}, { httpApiStatus: 413 }) {}

/** Anything the handlers did not expect: the message is the failure's own, redacted like every answer. */
export class InternalError extends Schema.Error<InternalError>("InternalError")({
  error: Schema.tag("internal_error"),
  message: Schema.String
}, { httpApiStatus: 500 }) {}
