import Foundation
import Hummingbird
import Logging
import Vigil

/// Admin HTTP: `/metrics` (Prometheus), `/health`, `/ready`, and `POST /admin/reload`.
///
/// Bound to loopback unless `admin.host` says otherwise. The reload endpoint needs
/// `Authorization: Bearer $VIGIL_ADMIN_TOKEN`; without a configured token it is disabled.
struct AdminServer {
    let daemon: Daemon

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let daemon = self.daemon
        router.get("/metrics") { _, _ -> Response in
            var buffer = ByteBuffer()
            buffer.writeBytes(daemon.metrics.registry.emitToBuffer())
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: buffer))
        }
        router.get("/health") { _, _ -> Response in
            daemon.isHealthy ? Self.text(.ok, "ok\n") : Self.text(.serviceUnavailable, "pipeline stalled\n")
        }
        router.get("/ready") { _, _ -> Response in
            daemon.isReady ? Self.text(.ok, "ready\n") : Self.text(.serviceUnavailable, "not ready\n")
        }
        router.post("/admin/reload") { request, _ -> Response in
            guard let token = daemon.adminToken else {
                return Self.text(.forbidden, "mutating admin endpoints are disabled: set VIGIL_ADMIN_TOKEN\n")
            }
            guard let given = request.headers[.authorization], Secret.constantTimeEqual(given, "Bearer " + token) else {
                daemon.logger.warning("admin reload refused: missing or wrong token")
                return Self.text(.unauthorized, "missing or wrong bearer token\n")
            }
            switch daemon.reload() {
            case .success(let v):
                return Self.text(.ok, "{\"model\":\"\(v.model)\",\"rules\":\"\(v.rules)\",\"costs\":\"\(v.costs)\"}\n")
            case .failure(let e):
                var w = JSONWriter()
                w.object { $0.field("error", e.description) }
                return Self.text(.unprocessableContent, w.text + "\n")
            }
        }
        return router
    }

    func application() throws -> some ApplicationProtocol {
        let c = daemon.configuration.admin
        let logger = daemon.logger
        return Application(
            router: router(),
            configuration: .init(address: .hostname(c.host, port: c.port), serverName: "vigild"),
            onServerRunning: { channel in
                logger.info("admin listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
            },
            logger: Logger(label: "vigil.admin"))
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
