#!/usr/bin/env node
// Node.js interop client of trafficalloc.v1.AllocatorService.
//
// Loads protos/trafficalloc/v1/allocator.proto at runtime (@grpc/proto-loader; no generated code) and
// runs the whole flow against a running server: ingest, solve, queries, streaming, report, cancel and
// activation. Prints one line per call ("ok   <Rpc> ..."); exits 1 with a clear message on the first
// unexpected error or unmet expectation, 2 on bad usage.
//
//   node interop.js [host:port]        (or ALLOCATOR_TARGET=host:port node interop.js)
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "protos");
const PROTO_FILE = "trafficalloc/v1/allocator.proto";
const DATE = "2026-12-01";
const CALL_DEADLINE_MS = 15_000; // every unary call
const SOLVE_DEADLINE_MS = 120_000; // Solve and SolveStream
const CONNECT_DEADLINE_MS = 30_000;

class Failure extends Error {}

function expect(cond, what) {
  if (!cond) throw new Failure(`expectation not met: ${what}`);
}

function expectEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Failure(`expectation not met: ${what}: expected ${e}, got ${a}`);
}

// int64 fields arrive as decimal strings (longs: String), so nothing is silently rounded.
function int(v) {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Failure(`int64 ${v} is not a safe integer`);
  return n;
}

function loadService() {
  // google/protobuf/timestamp.proto resolves from protobufjs' built-in well-known types: only our own
  // proto directory is needed on the include path.
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names exactly as in the .proto (snake_case)
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).trafficalloc.v1.AllocatorService;
}

// google.rpc.Status + BadRequest, to read the rich error details the server sends in the
// grpc-status-details-bin trailer (a minimal schema, field numbers as in googleapis).
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            BadRequest: {
              fields: { field_violations: { rule: "repeated", type: "FieldViolation", id: 1 } },
              nested: {
                FieldViolation: {
                  fields: { field: { type: "string", id: 1 }, description: { type: "string", id: 2 } },
                },
              },
            },
          },
        },
      },
    },
  },
});

function fieldViolations(err) {
  const raw = err.metadata && err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return [];
  const Status = rpcTypes.lookupType("google.rpc.Status");
  const BadRequest = rpcTypes.lookupType("google.rpc.BadRequest");
  const status = Status.decode(raw);
  return status.details
    .filter((d) => d.type_url === "type.googleapis.com/google.rpc.BadRequest")
    .flatMap((d) => BadRequest.decode(d.value).field_violations.map((v) => v.field));
}

function deadline(ms) {
  return new Date(Date.now() + ms);
}

class Flow {
  constructor(client) {
    this.client = client;
    this.calls = 0;
  }

  log(rpc, text) {
    this.calls += 1;
    console.log(`ok   ${rpc.padEnd(22)} ${text}`);
  }

  // A unary call with a deadline; a gRPC error is reported with the RPC's name.
  unary(rpc, request, ms = CALL_DEADLINE_MS) {
    return new Promise((resolve, reject) => {
      this.client[rpc](request, { deadline: deadline(ms) }, (err, response) => {
        if (err) reject(new Failure(`${rpc} failed: ${grpc.status[err.code]} (${err.code}): ${err.details}`));
        else resolve(response);
      });
    });
  }

  // A unary call that must fail with `code`; resolves with the error.
  unaryError(rpc, request, code) {
    return new Promise((resolve, reject) => {
      this.client[rpc](request, { deadline: deadline(CALL_DEADLINE_MS) }, (err) => {
        if (!err) reject(new Failure(`${rpc} succeeded, expected ${grpc.status[code]} (${code})`));
        else if (err.code !== code) {
          reject(
            new Failure(
              `${rpc} failed with ${grpc.status[err.code]} (${err.code}), expected ${grpc.status[code]} (${code}): ${err.details}`,
            ),
          );
        } else resolve(err);
      });
    });
  }

  // A server-streaming call with a deadline; resolves with every message.
  serverStream(rpc, request, ms) {
    return new Promise((resolve, reject) => {
      const out = [];
      const call = this.client[rpc](request, { deadline: deadline(ms) });
      call.on("data", (m) => out.push(m));
      call.on("error", (err) =>
        reject(new Failure(`${rpc} failed: ${grpc.status[err.code]} (${err.code}): ${err.details}`)),
      );
      call.on("end", () => resolve(out));
    });
  }

  async run() {
    const HOME = "CHANNEL_HOMEPAGE_CARD";
    const PAY = "CHANNEL_PAYMENT_SUCCESS";
    const SEARCH = "CHANNEL_SEARCH_RECOMMENDATION";

    // GetRules
    const rules = await this.unary("GetRules", {});
    const programs = rules.programs.map((p) => p.program).sort();
    expectEq(programs, ["PROGRAM_LUOMA_PLAN", "PROGRAM_STAR_PLAN"], "GetRules programs");
    expectEq(rules.channels.length, 3, "GetRules channel count");
    this.log("GetRules", `programs=${programs.join(",")} channels=${rules.channels.length}`);

    // PublishInventory: one small day, 24 hours x 3 channels x 2 regions
    const nodes = [];
    for (let hour = 0; hour < 24; hour++) {
      for (const channel of [HOME, PAY, SEARCH]) {
        for (const region of ["north", "south"]) {
          nodes.push({ hour, channel, region, capacity_impressions: 10_000, price_points_per_mille: 50 });
        }
      }
    }
    const inv = await this.unary("PublishInventory", { request_id: "node-inv-1", date: DATE, nodes });
    expectEq(inv.node_count, 144, "PublishInventory node_count");
    expectEq(int(inv.total_capacity_impressions), 1_440_000, "PublishInventory total capacity");
    expectEq(inv.replayed, false, "PublishInventory replayed");
    this.log("PublishInventory", `date=${inv.date} nodes=${inv.node_count} capacity=${inv.total_capacity_impressions}`);

    // RecordRedemption x3: both programs, then a retry of the first request id
    const starReq = {
      request_id: "node-r-1",
      merchant_id: "m-star",
      program: "PROGRAM_STAR_PLAN",
      points: 2_000,
      channels: [HOME, PAY],
      flight_start_date: DATE,
      flight_end_date: DATE,
      regions: ["north"],
      quality: [{ channel: HOME, score: 1.2 }],
    };
    const star = await this.unary("RecordRedemption", starReq);
    expectEq(star.replayed, false, "RecordRedemption (star) replayed");
    expectEq(star.redemption.status, "REDEMPTION_STATUS_ACTIVE", "RecordRedemption (star) status");
    expect(star.redemption.create_time && int(star.redemption.create_time.seconds) > 0, "create_time is set");
    const starId = star.redemption.redemption_id;
    this.log("RecordRedemption", `star  id=${starId} points=${star.redemption.points} replayed=${star.replayed}`);

    const luoma = await this.unary("RecordRedemption", {
      request_id: "node-r-2",
      merchant_id: "m-luoma",
      program: "PROGRAM_LUOMA_PLAN",
      points: 1_500,
      channels: [HOME, PAY],
      flight_start_date: DATE,
      flight_end_date: DATE,
      regions: ["south"],
    });
    expectEq(luoma.replayed, false, "RecordRedemption (luoma) replayed");
    const luomaId = luoma.redemption.redemption_id;
    this.log("RecordRedemption", `luoma id=${luomaId} points=${luoma.redemption.points} replayed=${luoma.replayed}`);

    const retry = await this.unary("RecordRedemption", starReq);
    expectEq(retry.replayed, true, "RecordRedemption retry replayed");
    expectEq(retry.redemption.redemption_id, starId, "RecordRedemption retry returns the first redemption");
    this.log("RecordRedemption", `retry id=${retry.redemption.redemption_id} replayed=${retry.replayed}`);

    // RecordRedemption with bad input: INVALID_ARGUMENT, with the offending fields in the details
    const bad = await this.unaryError(
      "RecordRedemption",
      { ...starReq, request_id: "node-r-bad", points: 0, flight_end_date: "2026-11-30" },
      grpc.status.INVALID_ARGUMENT,
    );
    const fields = fieldViolations(bad);
    expect(fields.includes("points"), `BadRequest details name "points" (got ${JSON.stringify(fields)})`);
    this.log("RecordRedemption", `bad   -> ${grpc.status[bad.code]} (${bad.code}) fields=${fields.join(",")}`);

    // SetEligibility
    const elig = await this.unary("SetEligibility", {
      request_id: "node-e-1",
      entries: ["f-1", "f-2"].map((merchant_id) => ({
        merchant_id,
        weight: 1.0,
        regions: ["north", "south"],
        valid_from_date: DATE,
        valid_to_date: DATE,
      })),
    });
    expectEq(elig.updated, 2, "SetEligibility updated");
    this.log("SetEligibility", `updated=${elig.updated} replayed=${elig.replayed}`);

    // Solve (activates)
    const solved = (await this.unary("Solve", { start_date: DATE }, SOLVE_DEADLINE_MS)).plan;
    expectEq(solved.status, "PLAN_STATUS_OPTIMAL", "Solve status");
    expectEq(solved.active, true, "Solve activates");
    expectEq(solved.supply_nodes, 144, "Solve supply_nodes");
    expectEq(solved.demands, 2, "Solve demands");
    const delivered = Object.fromEntries(solved.programs.map((p) => [p.program, int(p.points_delivered)]));
    expectEq(delivered, { PROGRAM_STAR_PLAN: 2_000, PROGRAM_LUOMA_PLAN: 1_500 }, "Solve points delivered");
    expectEq(int(solved.free_impressions), 4_000, "Solve free impressions (2 merchants x quota 2000)");
    const planA = solved.plan_id;
    this.log("Solve", `plan=${planA} status=${solved.status} cache_hit=${solved.cache_hit} active=${solved.active}`);

    // GetPlan
    const got = (await this.unary("GetPlan", { plan_id: planA })).plan;
    expectEq(got.plan_id, planA, "GetPlan plan_id");
    expectEq(got.status, "PLAN_STATUS_OPTIMAL", "GetPlan status");
    this.log("GetPlan", `plan=${got.plan_id} dates=${got.start_date}..${got.end_date} arcs=${got.arcs}`);

    // GetActivePlan
    const active = (await this.unary("GetActivePlan", { date: DATE })).plan;
    expectEq(active.plan_id, planA, "GetActivePlan plan_id");
    expectEq(active.active, true, "GetActivePlan active");
    this.log("GetActivePlan", `date=${DATE} plan=${active.plan_id}`);

    // GetMerchantAllocation
    const alloc = await this.unary("GetMerchantAllocation", { merchant_id: "m-star", date: DATE });
    expectEq(alloc.plan_id, planA, "GetMerchantAllocation plan_id");
    expectEq(int(alloc.points_delivered), 2_000, "GetMerchantAllocation points_delivered");
    expectEq(int(alloc.paid_impressions), 40_000, "GetMerchantAllocation paid_impressions (50 points/mille)");
    expect(alloc.paid.length > 0, "GetMerchantAllocation has paid cells");
    expect(
      alloc.paid.every((c) => [HOME, PAY].includes(c.channel) && c.region === "north"),
      "paid cells only on the redemption's channels and regions",
    );
    this.log("GetMerchantAllocation", `m-star cells=${alloc.paid.length} impressions=${alloc.paid_impressions}`);

    // GetNodeAllocation: a node where m-star got impressions
    const cell = alloc.paid[0];
    const node = await this.unary("GetNodeAllocation", {
      date: DATE,
      hour: cell.hour,
      channel: cell.channel,
      region: cell.region,
    });
    expectEq(int(node.capacity_impressions), 10_000, "GetNodeAllocation capacity");
    expect(
      node.entries.some((e) => e.merchant_id === "m-star" && int(e.impressions) === int(cell.impressions)),
      "GetNodeAllocation lists m-star with the merchant view's impressions",
    );
    expect(
      int(node.paid_impressions) + int(node.free_impressions) <= int(node.capacity_impressions),
      "GetNodeAllocation within capacity",
    );
    this.log(
      "GetNodeAllocation",
      `${cell.channel}/${cell.hour}/${cell.region} entries=${node.total_size} paid=${node.paid_impressions}`,
    );

    // ListRedemptions, one per page
    const listed = [];
    let token = "";
    let pages = 0;
    do {
      const page = await this.unary("ListRedemptions", { page_size: 1, page_token: token });
      listed.push(...page.redemptions.map((r) => r.redemption_id));
      token = page.next_page_token;
      pages += 1;
      expect(pages <= 10, "ListRedemptions pagination terminates");
      this.log("ListRedemptions", `page=${pages} redemptions=${page.redemptions.length} more=${Boolean(token)}`);
    } while (token);
    expectEq(listed.slice().sort(), [starId, luomaId].sort(), "ListRedemptions ids (the retry added none)");

    // SolveStream: a dry run with its own time limit (another parameter set, so a real solve)
    const events = await this.serverStream(
      "SolveStream",
      { start_date: DATE, dry_run: true, time_limit_seconds: 30 },
      SOLVE_DEADLINE_MS,
    );
    const phases = events.map((e) => e.progress.phase);
    expect(events.length >= 2, `SolveStream sends progress before DONE (got ${phases.join(",")})`);
    expectEq(phases[0], "SOLVE_PHASE_READING_INPUTS", "SolveStream first phase");
    expectEq(phases[phases.length - 1], "SOLVE_PHASE_DONE", "SolveStream last phase");
    const last = events[events.length - 1].progress;
    expect(last.plan && last.plan.plan_id, "SolveStream DONE carries the plan summary");
    expectEq(last.plan.status, "PLAN_STATUS_OPTIMAL", "SolveStream plan status");
    expectEq(last.plan.active, false, "SolveStream dry run does not activate");
    const planB = last.plan.plan_id;
    this.log("SolveStream", `events=${events.length} phases=${phases.map((p) => p.replace("SOLVE_PHASE_", "")).join(">")} plan=${planB}`);

    // GetPlanReport of the streamed plan
    const report = await this.unary("GetPlanReport", { plan_id: planB });
    expectEq(report.plan.plan_id, planB, "GetPlanReport plan_id");
    expectEq(report.nodes.length, 144, "GetPlanReport nodes");
    expectEq(report.free_shares.map((s) => s.merchant_id).sort(), ["f-1", "f-2"], "GetPlanReport free shares");
    const paid = report.nodes.reduce((sum, n) => sum + int(n.paid_impressions), 0);
    this.log("GetPlanReport", `plan=${planB} nodes=${report.nodes.length} paid=${paid} free_shares=${report.free_shares.length}`);

    // ExplainAllocation: m-star was delivered in full on the active plan
    const why = await this.unary("ExplainAllocation", { merchant_id: "m-star", date: DATE });
    expectEq(why.redemptions.length, 1, "ExplainAllocation redemptions");
    expectEq(why.redemptions[0].reasons[0].kind, "REASON_KIND_DELIVERED_IN_FULL", "ExplainAllocation reason");
    this.log("ExplainAllocation", `m-star ${why.redemptions[0].reasons[0].kind} binding=${why.binding_nodes.length}`);

    // CheckAvailability: room left for one more Star Plan redemption on HOME north
    const room = await this.unary("CheckAvailability", {
      program: "PROGRAM_STAR_PLAN",
      channels: [HOME],
      regions: ["north"],
      flight_start_date: DATE,
      flight_end_date: DATE,
    });
    expectEq(room.days.length, 1, "CheckAvailability days");
    expect(int(room.points_available) > 0, "CheckAvailability quotes room on a half-empty day");
    expectEq(int(room.points_available), int(room.days[0].points), "CheckAvailability one day bounds the flight");
    this.log("CheckAvailability", `points_available=${room.points_available}`);

    // CancelRedemption
    const cancelled = await this.unary("CancelRedemption", { request_id: "node-c-1", redemption_id: luomaId });
    expectEq(cancelled.redemption.redemption_id, luomaId, "CancelRedemption id");
    expectEq(cancelled.redemption.status, "REDEMPTION_STATUS_CANCELLED", "CancelRedemption status");
    this.log("CancelRedemption", `id=${luomaId} status=${cancelled.redemption.status}`);

    // ActivatePlan: the streamed dry-run plan replaces the solved one
    const activated = await this.unary("ActivatePlan", { request_id: "node-a-1", plan_id: planB });
    expectEq(activated.plan.plan_id, planB, "ActivatePlan plan_id");
    expectEq(activated.plan.active, true, "ActivatePlan active");
    expectEq(activated.previous_plan_ids, [planA], "ActivatePlan previous_plan_ids");
    this.log("ActivatePlan", `plan=${planB} previous=${activated.previous_plan_ids.join(",")}`);
  }
}

async function main() {
  const target = process.argv[2] || process.env.ALLOCATOR_TARGET;
  if (!target) {
    console.error("usage: node interop.js HOST:PORT   (or set ALLOCATOR_TARGET)");
    return 2;
  }
  const Service = loadService();
  const client = new Service(target, grpc.credentials.createInsecure());
  const started = Date.now();
  try {
    await new Promise((resolve, reject) =>
      client.waitForReady(deadline(CONNECT_DEADLINE_MS), (err) =>
        err ? reject(new Failure(`cannot connect to ${target}: ${err.message}`)) : resolve(),
      ),
    );
    const flow = new Flow(client);
    await flow.run();
    console.log(`PASS interop against ${target}: ${flow.calls} calls in ${Date.now() - started} ms`);
    return 0;
  } catch (err) {
    const text = err instanceof Failure ? err.message : (err && err.stack) || String(err);
    console.error(`FAIL interop against ${target}: ${text}`);
    return 1;
  } finally {
    client.close();
  }
}

main().then((code) => {
  process.exitCode = code;
});
