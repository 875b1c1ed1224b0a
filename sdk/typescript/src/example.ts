// The web API through its generated types (generated/web-v1.d.ts, `make sdk`) and openapi-fetch:
// the dashboard, a limit order with an idempotency key, and a 422 read as its typed problem.
// BASE_URL and TOKEN (a bearer access token) come from the environment; prints one JSON line.
import createClient from "openapi-fetch";
import type { components, paths } from "../generated/web-v1.js";

type LimitOrder = components["schemas"]["LimitOrderRequest"];
type Problem422 = components["schemas"]["Problem422"];

const baseUrl = process.env.BASE_URL ?? "http://127.0.0.1:8000";
const token = process.env.TOKEN;
if (!token) throw new Error("TOKEN (a bearer access token) is required");
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

function validationFields(problem: Problem422): string[] {
  // `type` tells the problems apart; only a validation problem has `errors`.
  if (problem.type === "/problems/validation-error") {
    return problem.errors.map((error) => error.field);
  }
  return [];
}

async function main(): Promise<void> {
  const dashboard = await client.GET("/web/v1/dashboard");
  if (!dashboard.data) throw new Error(`dashboard: ${dashboard.response.status}`);
  const degraded: components["schemas"]["DashboardView"]["degraded"] = dashboard.data.degraded;

  const order: LimitOrder = { symbol: "AAPL", side: "buy", type: "limit", quantity: 1, limit_price: 100.5 };
  const key = `sdk-ts-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
  const placed = await client.POST("/web/v1/orders", {
    params: { header: { "Idempotency-Key": key } },
    body: order,
  });
  if (!placed.data) throw new Error(`order: ${placed.response.status}`);
  const again = await client.POST("/web/v1/orders", {
    params: { header: { "Idempotency-Key": key } },
    body: order,
  });

  // A limit order without its price does not compile against LimitOrderRequest...
  // @ts-expect-error limit_price is required for a limit order
  const unpriced: LimitOrder = { symbol: "AAPL", side: "buy", type: "limit", quantity: 1 };
  void unpriced;
  // ...and zero shares passes the types but not the schema's bounds: the gateway's 422.
  const refused = await client.POST("/web/v1/orders", {
    params: { header: { "Idempotency-Key": `${key}-zero` } },
    body: { ...order, quantity: 0 },
  });
  if (refused.response.status !== 422 || !refused.error) {
    throw new Error(`expected a 422, got ${refused.response.status}`);
  }
  const problem = refused.error as Problem422;

  console.log(
    JSON.stringify({
      equity: dashboard.data.account.equity,
      degraded,
      order_id: placed.data.order_id,
      replayed: again.response.headers.get("Idempotent-Replayed"),
      same_order: again.data?.order_id === placed.data.order_id,
      problem_type: problem.type,
      problem_fields: validationFields(problem),
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
