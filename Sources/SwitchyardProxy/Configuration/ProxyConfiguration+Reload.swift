extension ProxyConfiguration {
    /// Keys that only take effect at start-up: the listening sockets, thread count, pooling mode,
    /// TLS, the metrics listener and the parameter list sessions were built with.
    static let restartOnlyKeys: Set<String> = [
        "listen_addr", "listen_port", "worker_threads", "pool_mode", "client_tls_sslmode", "client_tls_cert_file",
        "client_tls_key_file", "server_tls_sslmode", "server_tls_ca_file", "metrics_addr", "metrics_port",
        "track_extra_parameters", "state_file",
    ]

    /// The configuration to run after a reload to `new`: everything from `new` except the
    /// restart-only keys, which keep this configuration's values. Also returns the restart-only
    /// keys whose value changed, for the operator to hear about.
    func reloaded(from new: ProxyConfiguration) -> (configuration: ProxyConfiguration, ignoredKeys: [String]) {
        var merged = new
        var ignored: [String] = []
        func keep<Value: Equatable>(_ key: String, _ path: WritableKeyPath<ProxyConfiguration, Value>) {
            if merged[keyPath: path] != self[keyPath: path] { ignored.append(key) }
            merged[keyPath: path] = self[keyPath: path]
        }
        keep("listen_addr", \.listenAddress)
        keep("listen_port", \.listenPort)
        keep("worker_threads", \.workerThreads)
        keep("pool_mode", \.poolMode)
        keep("client_tls_*", \.clientTLS)
        keep("server_tls_*", \.serverTLS)
        keep("metrics_addr", \.metricsAddress)
        keep("metrics_port", \.metricsPort)
        keep("track_extra_parameters", \.trackedParameters)
        keep("state_file", \.switchover.stateFile)
        return (merged, ignored)
    }

    /// The settings as SHOW CONFIG lists them: key, value in force, whether RELOAD can change it.
    /// Passwords never appear; users and servers are summarised.
    var displayedSettings: [(key: String, value: String, reloadable: Bool)] {
        func seconds(_ duration: Duration?) -> String { duration.map { "\($0.inSeconds)" } ?? "0" }
        let rows: [(String, String)] = [
            ("listen_addr", listenAddress), ("listen_port", "\(listenPort)"), ("worker_threads", "\(workerThreads)"),
            ("pool_mode", poolMode.rawValue), ("pool_size", "\(poolSize)"), ("max_client_conn", "\(maxClientConnections)"),
            ("max_message_size", "\(maxMessageSize)"), ("max_buffered_bytes", "\(maxBufferedBytes)"), ("connect_timeout", seconds(connectTimeout)),
            ("query_wait_timeout", seconds(queryWaitTimeout)), ("server_idle_timeout", seconds(serverIdleTimeout)),
            ("idle_transaction_timeout", seconds(idleTransactionTimeout)), ("message_stall_timeout", seconds(messageStallTimeout)),
            ("shutdown_timeout", seconds(shutdownTimeout)),
            ("pause_timeout", seconds(pauseTimeout)), ("server_reset_query", serverResetQuery ?? ""),
            ("server_reset_mode", serverResetMode.rawValue),
            ("auth_type", clientAuthMethod.rawValue), ("admin_users", adminUsers.sorted().joined(separator: ",")),
            ("log_level", logLevel), ("metrics_addr", metricsAddress), ("metrics_port", "\(metricsPort ?? 0)"),
            ("client_tls_sslmode", clientTLS.mode.rawValue), ("server_tls_sslmode", serverTLS.mode.rawValue),
            ("default_route", routing.defaultRoute.rawValue), ("replica_fallback", routing.fallbackToPrimary ? "primary" : "error"),
            ("max_replica_lag", "\(routing.maxLagBytes)"), ("max_replica_lag_seconds", "\(routing.maxLagSeconds)"),
            ("health_check_interval", seconds(routing.healthCheckInterval)),
            ("health_check_hysteresis", "\(routing.healthCheckHysteresis)"), ("health_check_user", routing.healthCheckUser ?? ""),
            ("health_check_database", routing.healthCheckDatabase), ("track_extra_parameters", trackedParameters.joined(separator: ",")),
            ("read_consistency", routing.readConsistency.rawValue),
            ("read_consistency_max_wait", seconds(routing.readConsistencyMaxWait)),
            ("auth_user", authQuery?.user ?? ""), ("auth_query", authQuery?.query ?? ""),
            ("auth_dbname", authQuery?.database ?? ""), ("auth_cache_ttl", authQuery.map { seconds($0.cacheTTL) } ?? ""),
            ("switchover_user", switchover.user ?? ""), ("switchover_drain_timeout", seconds(switchover.drainTimeout)),
            ("switchover_max_lag", "\(switchover.maxLagBytes)"), ("state_file", switchover.stateFile ?? ""),
            ("servers", servers.map { "\($0.name)=\($0.host):\($0.port)/\($0.role.rawValue)" }.joined(separator: " ")),
            ("users", users.keys.sorted().joined(separator: ",")),
            ("config_file", sourcePath ?? ""),
        ]
        return rows.map { key, value in
            let restartOnly = Self.restartOnlyKeys.contains(key) || key.hasPrefix("client_tls") || key.hasPrefix("server_tls") || key == "config_file"
            return (key, value, !restartOnly)
        }
    }
}
