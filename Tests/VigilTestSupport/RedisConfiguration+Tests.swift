import VigilRedis

extension RedisConfiguration {
    /// A store for tests of what it computes, not of its deadlines: the suite runs many servers
    /// and processes in parallel on two cores, where a round trip now and then exceeds the
    /// production default of 50 ms (a CI run once failed a parity test on its first command).
    /// Tests of timeouts and the breaker keep the defaults.
    public static func forTests(_ url: String) throws -> RedisConfiguration {
        var c = RedisConfiguration(url: try RedisURL(url))
        c.connectTimeout = .seconds(2)
        c.readTimeout = .seconds(5)
        return c
    }
}
