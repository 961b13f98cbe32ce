import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/** caas fixture: an executable jar serving $PORT with the JDK's built-in HTTP server. */
public class Main {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "5000"));
        String instance = System.getenv().getOrDefault("CAAS_INSTANCE", "unknown");
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 0);
        server.createContext("/", exchange -> {
            byte[] body = ("jar app works: " + instance + " (Java " + System.getProperty("java.version")
                    + ", max heap " + Runtime.getRuntime().maxMemory() / (1024 * 1024) + " MB)\n")
                    .getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> server.stop(0)));
        System.out.println("jar fixture listening on " + port + " as " + instance);
    }
}
