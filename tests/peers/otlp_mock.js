#!/usr/bin/env node
// An OTLP/HTTP receiver for Cistern's tests: @elastic/mockotlpserver's HTTP service (its
// protobufjs decoding of the published .proto files is the independent implementation our
// encoder is checked against), started through its library API rather than its CLI because the
// CLI has no port option (always 4318, plus gRPC on 4317), which parallel tests cannot share.
//
//   node otlp_mock.js [--host 127.0.0.1] [--port 0] [--fail COUNT:STATUS[:RETRY_AFTER_S]]
//
// Prints one JSON object per line on stdout:
//   {"event":"listening","url":"http://127.0.0.1:41234"}      once, when it accepts requests
//   {"event":"request","method":"POST","path":"/v1/logs","headers":{...},"status":200}
//   {"event":"logs","request":{...}}   a decoded ExportLogsServiceRequest (protobufjs toObject:
//                                      camelCase, 64-bit integers as strings, bytes as base64)
//   {"event":"error","message":"..."}
// Exits on SIGTERM or SIGINT, or when its parent (the test) is gone, so it never outlives it.
//
// Two additions the mock lacks: a gzip request body (Content-Encoding: gzip) is decompressed
// before the mock reads it, as OTLP receivers must; and --fail answers the first COUNT requests
// with STATUS (and Retry-After) without passing them on, as a receiver that fails N times.
'use strict';

const http = require('http');
const zlib = require('zlib');

function print(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

function parseArgs(argv) {
    const opts = {host: '127.0.0.1', port: 0, failCount: 0, failStatus: 503, retryAfter: null};
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = argv[i + 1];
        if (arg === '--host' && value !== undefined) {
            opts.host = value;
            i++;
        } else if (arg === '--port' && value !== undefined) {
            opts.port = Number(value);
            i++;
        } else if (arg === '--fail' && value !== undefined) {
            const [count, status, retryAfter] = value.split(':');
            opts.failCount = Number(count);
            opts.failStatus = Number(status || 503);
            opts.retryAfter = retryAfter === undefined ? null : retryAfter;
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

// Wraps the mock's request listener: counts and logs requests, fails the first ones when asked,
// and hands the listener a gunzipping stream in place of a gzip-encoded request.
function wrapListener(listener, opts) {
    let failuresLeft = opts.failCount;
    return (req, res) => {
        let status = 200;
        if (failuresLeft > 0) {
            failuresLeft--;
            status = opts.failStatus;
            const headers = {'Content-Type': 'text/plain'};
            if (opts.retryAfter !== null) headers['Retry-After'] = opts.retryAfter;
            req.resume();
            req.on('end', () => {
                res.writeHead(status, headers);
                res.end(`mock failure ${status}`);
            });
        }
        print({event: 'request', method: req.method, path: req.url, headers: req.headers, status});
        if (status !== 200) return;

        const encoding = (req.headers['content-encoding'] || '').toLowerCase();
        if (encoding !== 'gzip') {
            listener(req, res);
            return;
        }
        const body = zlib.createGunzip();
        body.headers = req.headers;
        body.method = req.method;
        body.url = req.url;
        body.on('error', (err) => {
            print({event: 'error', message: `gunzip: ${err.message}`});
            if (!res.headersSent) {
                res.writeHead(400, {'Content-Type': 'text/plain'});
                res.end(`bad gzip body: ${err.message}`);
            }
        });
        req.pipe(body);
        listener(body, res);
    };
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));

    // The mock creates its server with http.createServer(listener) when it starts.
    const createServer = http.createServer;
    http.createServer = function (...args) {
        const i = args.findIndex((a) => typeof a === 'function');
        if (i >= 0) args[i] = wrapListener(args[i], opts);
        return createServer.apply(http, args);
    };

    const {MockOtlpServer} = require('@elastic/mockotlpserver');
    const server = new MockOtlpServer({
        logLevel: 'warn',
        services: ['http'],
        httpHostname: opts.host,
        httpPort: opts.port,
        onLogs: (logs) => {
            const request = logs.constructor.toObject(logs, {
                longs: String,
                bytes: String,
                enums: Number,
            });
            print({event: 'logs', request});
        },
    });
    await server.start();
    print({event: 'listening', url: String(server.httpUrl).replace(/\/$/, '')});

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
