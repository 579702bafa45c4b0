#!/usr/bin/env node
// An OpAMP server for Cistern's tests: @elastic/mockopampserver (OpAMP over plain HTTP(S); its
// @bufbuild/protobuf decoding of the published opamp.proto is the independent implementation
// our client is checked against), started through its library API on a port of the test's
// choosing (0: the OS picks one), so parallel tests never share a server.
//
//   node opamp_mock.js [--host 127.0.0.1] [--port 0]
//                      [--ca FILE --cert FILE --key FILE [--request-client-cert]]
//
// With --cert and --key it serves HTTPS; with --request-client-cert it requires a client
// certificate signed by --ca (mutual TLS).
//
// Prints one JSON object per line on stdout:
//   {"event":"listening","url":"http://127.0.0.1:41234/v1/opamp"}   once, when it accepts requests
//   {"event":"message","status":200,"a2s":{...},"s2a":{...}}         one per OpAMP request: the
//        decoded AgentToServer and the ServerToAgent answered (protobuf JSON as @bufbuild/protobuf
//        writes it: camelCase names, 64-bit integers as strings, bytes as base64, enums by name,
//        fields at their default value included); "s2a" is null when the answer was not a
//        ServerToAgent (an HTTP error), "a2s" null when the body did not decode, "error" says why
//   {"event":"control","path":"/cistern/...","result":{...}}         a control request, done
//   {"event":"error","message":"..."}
// Exits on SIGTERM or SIGINT, or when its parent (the test) is gone, so it never outlives it.
//
// What the mock lacks, added here as a control API (POST, JSON body, same port and scheme;
// not part of OpAMP, only for tests):
//   /cistern/remote-config    {"files": {"cistern.yaml": {"body": "...", "contentType":
//                             "text/yaml"}, ...}} offers this config map (any number of entries;
//                             "bodyBase64" in place of "body" for bytes) to every agent whose
//                             last reported hash differs, as the mock does; {"files": null}
//                             withdraws it. Answers {"hash": "<hex of the mock's config_hash>"}.
//   /cistern/report-full-state the next answer sets the ReportFullState flag.
//   /cistern/forget-agents     the mock forgets every agent, as a restarted server would (it then
//                             asks for the full state by itself and offers its config again).
//   /cistern/heartbeat-interval {"seconds": N} every answer from now carries
//                             connection_settings.opamp.heartbeat_interval_seconds = N (0: none).
//   /cistern/fail             {"count": N, "status": 503, "retryAfter": "2"} the next N OpAMP
//                             requests get that HTTP status (and Retry-After) without reaching
//                             the mock.
//   /cistern/error-response   {"count": N, "type": "unavailable" | "bad_request" | "unknown",
//                             "message": "...", "retryAfterMs": M} the next N answers are a
//                             ServerErrorResponse (with retry_info when retryAfterMs is given).
//   /cistern/stall            {"count": N} the next N OpAMP requests are read and never answered
//                             (printed with status 0), as a server that hangs.
'use strict';

const fs = require('fs');
const {create, fromBinary, toJson} = require('@bufbuild/protobuf');
const {MockOpAMPServer} = require('@elastic/mockopampserver');
const {
    AgentToServerSchema,
    ServerToAgentSchema,
    ServerErrorResponseType,
    ServerToAgentFlags,
} = require('@elastic/mockopampserver/lib/generated/opamp_pb.js');

const OPAMP_PATH = '/v1/opamp';
const JSON_OPTIONS = {alwaysEmitImplicit: true};

function print(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function parseArgs(argv) {
    const opts = {host: '127.0.0.1', port: 0, requestCert: false};
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = argv[i + 1];
        if (arg === '--request-client-cert') {
            opts.requestCert = true;
        } else if (['--host', '--port', '--ca', '--cert', '--key'].includes(arg) && value !== undefined) {
            opts[arg.slice(2)] = arg === '--port' ? Number(value) : value;
            i++;
        } else {
            throw new Error(`unknown argument "${arg}"`);
        }
    }
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
        throw new Error('--port needs a number from 0 to 65535');
    }
    return opts;
}

function readBody(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on('data', (chunk) => chunks.push(chunk));
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
    });
}

// The AgentToServer in `body` as protobuf JSON; null when it does not decode.
function decodeAgentToServer(body) {
    try {
        return toJson(AgentToServerSchema, fromBinary(AgentToServerSchema, body), JSON_OPTIONS);
    } catch {
        return null;
    }
}

function respondJson(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body)});
    res.end(body);
}

const ERROR_TYPES = {
    unknown: ServerErrorResponseType.ServerErrorResponseType_Unknown,
    bad_request: ServerErrorResponseType.ServerErrorResponseType_BadRequest,
    unavailable: ServerErrorResponseType.ServerErrorResponseType_Unavailable,
};

class CisternOpampMock extends MockOpAMPServer {
    constructor(opts) {
        super(opts);
        this._reportFullState = false;
        this._heartbeatSeconds = 0;
        this._fail = {count: 0, status: 503, retryAfter: null};
        this._errorResponse = {count: 0};
        this._stall = 0;
        this._stalled = [];
    }

    // Drops the connections of stalled requests, so that close() does not wait for them.
    async close() {
        for (const res of this._stalled) res.socket?.destroy();
        return super.close();
    }

    _onRequest(req, res) {
        const path = new URL(req.url, 'http://localhost').pathname;
        if (req.method === 'POST' && path.startsWith('/cistern/')) {
            this._control(path, req, res).catch((err) => {
                print({event: 'error', message: `control ${path}: ${err.message}`});
                respondJson(res, 400, {error: err.message});
            });
            return;
        }
        if (path === OPAMP_PATH && this._stall > 0) {
            this._stall--;
            this._stalled.push(res);
            readBody(req).then((body) => {
                print({event: 'message', status: 0, a2s: decodeAgentToServer(body), s2a: null, error: 'stalled'});
            });
            return;
        }
        if (path === OPAMP_PATH && this._fail.count > 0) {
            this._fail.count--;
            const {status, retryAfter} = this._fail;
            readBody(req).then((body) => {
                const a2s = decodeAgentToServer(body);
                const headers = {'Content-Type': 'text/plain'};
                if (retryAfter !== null && retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
                res.writeHead(status, headers);
                res.end(`mock failure ${status}`);
                print({event: 'message', status, a2s, s2a: null, error: a2s ? undefined : 'undecodable'});
            });
            return;
        }
        super._onRequest(req, res);
    }

    _processAgentToServer(a2s) {
        if (this._errorResponse.count > 0) {
            this._errorResponse.count--;
            const {type, message, retryAfterMs} = this._errorResponse;
            const errorResponse = {type: ERROR_TYPES[type] ?? ERROR_TYPES.unknown, errorMessage: message ?? ''};
            if (retryAfterMs !== undefined && retryAfterMs !== null) {
                errorResponse.Details = {
                    case: 'retryInfo',
                    value: {retryAfterNanoseconds: BigInt(retryAfterMs) * 1000000n},
                };
            }
            return create(ServerToAgentSchema, {instanceUid: a2s.instanceUid, errorResponse});
        }
        const s2a = super._processAgentToServer(a2s);
        if (this._reportFullState) {
            this._reportFullState = false;
            s2a.flags = BigInt(s2a.flags) | BigInt(ServerToAgentFlags.ServerToAgentFlags_ReportFullState);
        }
        if (this._heartbeatSeconds > 0) {
            s2a.connectionSettings = {
                $typeName: 'opamp.proto.ConnectionSettingsOffers',
                hash: new Uint8Array(0),
                opamp: {
                    $typeName: 'opamp.proto.OpAMPConnectionSettings',
                    destinationEndpoint: '',
                    heartbeatIntervalSeconds: BigInt(this._heartbeatSeconds),
                },
                otherConnections: {},
            };
        }
        return s2a;
    }

    // Called by the mock for every OpAMP request once it answered (or failed to).
    _testNoteRequest({req, res, a2s, s2a, err}) {
        if (new URL(req.url, 'http://localhost').pathname !== OPAMP_PATH && !a2s) {
            print({event: 'message', status: res?.statusCode ?? 0, a2s: null, s2a: null, error: `path ${req.url}`});
            return;
        }
        print({
            event: 'message',
            status: res?.statusCode ?? 0,
            a2s: a2s ? toJson(AgentToServerSchema, a2s, JSON_OPTIONS) : null,
            s2a: s2a ? toJson(ServerToAgentSchema, s2a, JSON_OPTIONS) : null,
            error: err ? err.message : undefined,
        });
    }

    async _control(path, req, res) {
        const text = (await readBody(req)).toString('utf8');
        const body = text ? JSON.parse(text) : {};
        let result = {};
        switch (path) {
            case '/cistern/remote-config':
                if (body.files === null) {
                    this._agentConfigMap = undefined;
                    this._agentConfigMapHash = undefined;
                    break;
                }
                {
                    const configMap = {};
                    for (const [name, file] of Object.entries(body.files ?? {})) {
                        configMap[name] = {
                            body: file.bodyBase64 !== undefined ? Buffer.from(file.bodyBase64, 'base64') : Buffer.from(file.body ?? '', 'utf8'),
                            contentType: file.contentType ?? 'text/yaml',
                        };
                    }
                    this.setAgentConfigMap({configMap});
                    result = {hash: Buffer.from(this._agentConfigMapHash).toString('hex')};
                }
                break;
            case '/cistern/report-full-state':
                this._reportFullState = true;
                break;
            case '/cistern/forget-agents':
                this._activeAgents.clear();
                break;
            case '/cistern/heartbeat-interval':
                this._heartbeatSeconds = Number(body.seconds ?? 0);
                break;
            case '/cistern/fail':
                this._fail = {count: Number(body.count ?? 1), status: Number(body.status ?? 503), retryAfter: body.retryAfter ?? null};
                break;
            case '/cistern/stall':
                this._stall = Number(body.count ?? 1);
                break;
            case '/cistern/error-response':
                this._errorResponse = {count: Number(body.count ?? 1), type: body.type, message: body.message, retryAfterMs: body.retryAfterMs};
                break;
            default:
                throw new Error(`unknown control path ${path}`);
        }
        respondJson(res, 200, result);
        print({event: 'control', path, result});
    }
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const serverOpts = {logLevel: 'fatal', hostname: opts.host, port: opts.port};
    if (opts.ca) serverOpts.ca = fs.readFileSync(opts.ca);
    if (opts.cert) serverOpts.cert = fs.readFileSync(opts.cert);
    if (opts.key) serverOpts.key = fs.readFileSync(opts.key);
    if (opts.requestCert) serverOpts.requestCert = true;
    const server = new CisternOpampMock(serverOpts);
    await server.start();
    print({event: 'listening', url: server.endpoint});

    const stop = () => {
        server.close().finally(() => process.exit(0));
        setTimeout(() => process.exit(0), 2000).unref();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    // A test killed by SIGKILL cannot stop its peers: notice being reparented instead.
    const parent = process.ppid;
    setInterval(() => {
        if (process.ppid !== parent) stop();
    }, 500).unref();
}

main().catch((err) => {
    print({event: 'error', message: err.message});
    process.exit(1);
});
