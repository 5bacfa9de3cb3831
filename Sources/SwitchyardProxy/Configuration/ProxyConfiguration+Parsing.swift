import Foundation

extension ProxyConfiguration {
    /// Parses and validates configuration text.
    /// - Parameters:
    ///   - fileName: how the text is named in error messages.
    ///   - baseDirectory: relative paths (`auth_file`, TLS files) resolve against it; nil leaves them
    ///     relative to the current directory.
    /// - Throws: `ConfigurationError` listing every problem found, not just the first.
    public static func parse(
        _ text: String, fileName: String = "<string>", baseDirectory: String? = nil
    ) throws(ConfigurationError) -> ProxyConfiguration {
        let parser = ConfigurationParser(file: fileName, baseDirectory: baseDirectory)
        let configuration = parser.build(text)
        guard parser.issues.isEmpty else { throw ConfigurationError(issues: parser.sortedIssues) }
        return configuration
    }

    /// Loads a configuration file; relative paths inside it resolve against its directory.
    /// - Throws: `ConfigurationError`, also when the file itself cannot be read.
    public static func load(path: String) throws(ConfigurationError) -> ProxyConfiguration {
        let (text, problem) = ConfigurationParser.readText(path)
        guard let text else {
            let message = "cannot read configuration file: \(problem)"
            throw ConfigurationError(issues: [.init(file: path, line: nil, key: nil, message: message)])
        }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) }
        var configuration = try parse(text, fileName: path, baseDirectory: directory.map { $0.isEmpty ? "/" : $0 })
        configuration.sourcePath = path
        return configuration
    }
}

extension ConfigurationParser {
    func build(_ text: String) -> ProxyConfiguration {
        lex(text)
        let auth = choice("auth_type", default: ClientAuthMethod.scramSHA256)
        let workers = int("worker_threads", default: 0, 0...256)
        let metricsPort = int("metrics_port", default: 0, 0...65535)
        let resetQuery = setting("server_reset_query")?.value ?? "DISCARD ALL"
        let adminList = (setting("admin_users")?.value ?? "").split(separator: ",").map { String(Self.trim($0)) }
        let clientMode = choice("client_tls_sslmode", default: ClientTLSMode.disable)
        let serverMode = choice("server_tls_sslmode", default: ServerTLSMode.disable)
        let clientFile = { (key: String) in
            self.tlsFile(key, required: clientMode != .disable, checked: clientMode != .disable,
                         modeKey: "client_tls_sslmode", mode: clientMode.rawValue)
        }

        let servers = buildServers()
        var users = buildUsers(auth)
        if let (path, line) = path("auth_file") { mergeAuthFile(path, configLine: line, auth: auth, into: &users) }
        // With a password-based auth_type an admin missing from the users could never log in: surely a typo.
        if auth != .trust, let line = settings["admin_users"]?.line {
            for name in adminList where !name.isEmpty && users[name] == nil && !issues.contains(where: { $0.key == name }) {
                fail(line, "admin_users", "admin user '\(name)' is not defined in [users] or auth_file")
            }
        }

        return ProxyConfiguration(
            listenAddress: string("listen_addr", default: "127.0.0.1"),
            listenPort: int("listen_port", default: 6432, 1...65535),
            workerThreads: workers == 0 ? max(1, ProcessInfo.processInfo.activeProcessorCount) : workers,
            poolMode: choice("pool_mode", default: PoolMode.transaction),
            poolSize: int("pool_size", default: 20, 1...Int.max),
            maxClientConnections: int("max_client_conn", default: 1000, 1...Int.max),
            maxMessageSize: int("max_message_size", default: 1 << 30, 1024...Int(Int32.max)),
            maxBufferedBytes: int("max_buffered_bytes", default: 512 << 20, (1 << 20)...Int.max),
            connectTimeout: seconds("connect_timeout", default: 5, allowZero: false),
            queryWaitTimeout: optionalSeconds("query_wait_timeout", default: 30),
            serverIdleTimeout: optionalSeconds("server_idle_timeout", default: 600),
            idleTransactionTimeout: optionalSeconds("idle_transaction_timeout", default: 0),
            messageStallTimeout: optionalSeconds("message_stall_timeout", default: 30),
            shutdownTimeout: seconds("shutdown_timeout", default: 30),
            pauseTimeout: seconds("pause_timeout", default: 30, allowZero: false),
            serverResetQuery: resetQuery.isEmpty ? nil : resetQuery,
            serverResetMode: choice("server_reset_mode", default: ServerResetMode.discard),
            clientAuthMethod: auth,
            adminUsers: Set(adminList.filter { !$0.isEmpty }),
            logLevel: oneOf("log_level", default: "info", Self.logLevels),
            metricsAddress: string("metrics_addr", default: "127.0.0.1"),
            metricsPort: metricsPort == 0 ? nil : metricsPort,
            clientTLS: ClientTLSConfiguration(
                mode: clientMode, certificateFile: clientFile("client_tls_cert_file"), keyFile: clientFile("client_tls_key_file")),
            serverTLS: ServerTLSConfiguration(
                mode: serverMode,
                caFile: tlsFile("server_tls_ca_file", required: serverMode == .verifyCA || serverMode == .verifyFull,
                                checked: serverMode != .disable, modeKey: "server_tls_sslmode", mode: serverMode.rawValue)),
            servers: servers,
            trackedParameters: (setting("track_extra_parameters")?.value ?? "").split(separator: ",")
                .map { String(Self.trim($0)) }.filter { !$0.isEmpty },
            routing: buildRouting(servers: servers, users: users),
            users: users,
            authQuery: buildAuthQuery(auth: auth, users: users),
            switchover: buildSwitchover(users: users),
            sourcePath: nil
        )
    }

    /// The routing keys; health checks need a user whose server credentials they can borrow.
    func buildRouting(servers: [ServerDefinition], users: [String: UserDefinition]) -> RoutingConfiguration {
        let healthUser = setting("health_check_user")
        if let healthUser, users[healthUser.value] == nil {
            fail(healthUser.line, "health_check_user", "health_check_user '\(healthUser.value)' is not defined in [users] or auth_file")
        } else if healthUser == nil, servers.contains(where: { $0.role == .replica }), servers.contains(where: { $0.role == .primary }),
                  let line = sections["servers"]?.line {
            fail(line, "health_check_user", "replicas are configured, so health_check_user must name a [users] entry for the health checks")
        }
        return RoutingConfiguration(
            defaultRoute: choice("default_route", default: RouteSetting.auto),
            fallbackToPrimary: oneOf("replica_fallback", default: "primary", ["primary", "error"]) == "primary",
            maxLagBytes: Int64(int("max_replica_lag", default: 16 << 20, 0...Int.max)),
            maxLagSeconds: seconds("max_replica_lag_seconds", default: 10).inSeconds,
            healthCheckInterval: seconds("health_check_interval", default: 1, allowZero: false),
            healthCheckHysteresis: int("health_check_hysteresis", default: 3, 1...1000),
            healthCheckUser: healthUser?.value,
            healthCheckDatabase: string("health_check_database", default: "postgres"),
            readConsistency: choice("read_consistency", default: ReadConsistency.session),
            readConsistencyMaxWait: seconds("read_consistency_max_wait", default: 0.05))
    }

    /// The SWITCHOVER keys; the user must exist, since the privileged steps log in with its server credentials.
    func buildSwitchover(users: [String: UserDefinition]) -> SwitchoverConfiguration {
        let user = setting("switchover_user").flatMap { $0.value.isEmpty ? nil : $0 }
        if let user, users[user.value] == nil {
            fail(user.line, "switchover_user", "switchover_user '\(user.value)' is not defined in [users] or auth_file")
        }
        return SwitchoverConfiguration(
            user: user?.value,
            drainTimeout: seconds("switchover_drain_timeout", default: 5, allowZero: false),
            maxLagBytes: Int64(int("switchover_max_lag", default: 16 << 20, 0...Int.max)),
            stateFile: path("state_file")?.path)
    }

    /// `auth_user` and the keys that only mean something with it. The query must take the role as `$1`.
    func buildAuthQuery(auth: ClientAuthMethod, users: [String: UserDefinition]) -> AuthQueryConfiguration? {
        let dependents = ["auth_query", "auth_dbname", "auth_cache_ttl"]
        guard let user = setting("auth_user"), !user.value.isEmpty else {
            for key in dependents { if let entry = settings[key] { fail(entry.line, key, "'\(key)' has no effect without auth_user") } }
            return nil
        }
        if users[user.value] == nil, !issues.contains(where: { $0.key == user.value }) {
            fail(user.line, "auth_user", "auth_user '\(user.value)' is not defined in [users] or auth_file")
        }
        if auth == .trust {
            fail(settings["auth_type"]?.line ?? user.line, "auth_user", "auth_user has no effect with auth_type = trust (no password is checked)")
        }
        let query = string("auth_query", default: AuthQueryConfiguration.defaultQuery)
        if !query.contains("$1"), let line = settings["auth_query"]?.line {
            fail(line, "auth_query", "auth_query must take the user name as the parameter $1")
        }
        let database = setting("auth_dbname").flatMap { $0.value.isEmpty ? nil : $0.value }
        return AuthQueryConfiguration(user: user.value, query: query, database: database,
                                      cacheTTL: seconds("auth_cache_ttl", default: 10))
    }

    /// `name = host=... port=... role=primary|replica|standby weight=...`; at least one server, exactly one primary.
    func buildServers() -> [ServerDefinition] {
        let section = sections["servers"]
        guard let section, !section.entries.isEmpty else {
            fail(section?.line, nil, "no servers defined: [servers] needs one entry with role=primary")
            return []
        }
        var servers: [ServerDefinition] = []
        for entry in section.entries {
            let what = "server '\(entry.key)'", line = entry.line
            guard entry.key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                fail(line, entry.key, "invalid server name '\(entry.key)' (use letters, digits, '_' and '-')")
                continue
            }
            guard let fields = fields(entry, what, known: ["host", "port", "role", "weight"]) else { continue }
            let host = fields["host"].flatMap { $0.isEmpty ? nil : $0 }, roleValue = fields["role"]
            if host == nil { fail(line, entry.key, "\(what) needs host=...") }
            if roleValue == nil { fail(line, entry.key, "\(what) needs role=primary, role=replica or role=standby") }
            let role = roleValue
                .flatMap { checkChoice($0, ServerRole.allCases.map(\.rawValue), what: "role of \(what)", line: line, key: entry.key) }
                .flatMap(ServerRole.init)
            let port = fields["port"].map { checkInt($0, 1...65535, what: "port of \(what)", line: line, key: entry.key) } ?? 5432
            let weight = fields["weight"].map { checkInt($0, 1...Int.max, what: "weight of \(what)", line: line, key: entry.key) }
                ?? 1
            guard let host, let role, let port, let weight else { continue }
            if role == .primary, let first = servers.first(where: { $0.role == .primary }) {
                let firstLine = section.entries.first { $0.key == first.name }!.line
                fail(line, entry.key, "\(what) is a second primary (server '\(first.name)' on line \(firstLine) is already primary)")
            }
            servers.append(ServerDefinition(name: entry.key, host: host, port: port, role: role, weight: weight))
        }
        let failedServers = issues.contains { issue in section.entries.contains { $0.key == issue.key } }
        if !servers.contains(where: { $0.role == .primary }) && !failedServers {
            fail(section.line, nil, "no primary server: exactly one [servers] entry needs role=primary")
        }
        return servers
    }

    /// `name = password=... server_user=... server_password=...`. Values are never echoed in messages.
    func buildUsers(_ auth: ClientAuthMethod) -> [String: UserDefinition] {
        var users: [String: UserDefinition] = [:]
        for entry in sections["users"]?.entries ?? [] {
            let what = "user '\(entry.key)'", line = entry.line
            guard let fields = fields(entry, what, known: ["password", "server_user", "server_password", "route", "read_consistency"]) else { continue }
            var secret: ClientSecret?
            if let password = fields["password"] {
                guard let parsed = clientSecret(password, user: entry.key, auth: auth, line: line) else { continue }
                secret = parsed
            } else if auth != .trust {
                fail(line, entry.key, "\(what) needs password=... (auth_type = \(auth.rawValue))")
                continue
            }
            if fields["server_user"]?.isEmpty == true || fields["server_password"]?.isEmpty == true {
                fail(line, entry.key, "\(what): server_user and server_password must not be empty when given")
                continue
            }
            let route = fields["route"].map { checkChoice($0, RouteSetting.allCases.map(\.rawValue), what: "route of \(what)", line: line, key: entry.key) }
            let consistency = fields["read_consistency"].map {
                checkChoice($0, ReadConsistency.allCases.map(\.rawValue), what: "read_consistency of \(what)", line: line, key: entry.key)
            }
            users[entry.key] = UserDefinition(name: entry.key, clientSecret: secret, serverUser: fields["server_user"],
                                              serverPassword: fields["server_password"] ?? secret?.plaintextValue,
                                              route: route.flatMap { $0.flatMap(RouteSetting.init(rawValue:)) },
                                              readConsistency: consistency.flatMap { $0.flatMap(ReadConsistency.init(rawValue:)) })
        }
        return users
    }

    /// Merges a PgBouncer userlist: `"user" "secret"` per line, `""` escapes a quote, `;` or `#` starts a comment.
    /// Its users log in to Postgres under their own name; errors name that file and line.
    func mergeAuthFile(_ path: String, configLine: Int, auth: ClientAuthMethod, into users: inout [String: UserDefinition]) {
        let (text, problem) = Self.readText(path)
        guard let text else { fail(configLine, "auth_file", "cannot read auth_file '\(path)': \(problem)"); return }
        var seen: [String: Int] = [:]
        for (index, raw) in Self.lines(text).enumerated() {
            let line = index + 1, content = Self.trim(raw)
            if content.isEmpty || content.first == ";" || content.first == "#" { continue }
            guard let fields = Self.userlistFields(content), fields.count >= 2, !fields[0].isEmpty else {
                fail(line, nil, "expected \"user\" \"password\"", in: path)
                continue
            }
            let name = fields[0]
            if let first = seen[name] {
                fail(line, name, "user '\(name)' is listed twice (first on line \(first))", in: path)
            } else if let other = sections["users"]?.firstLine[name] {
                fail(line, name, "user '\(name)' is also defined in [users] (\(file):\(other))", in: path)
            } else if fields[1].isEmpty && auth == .trust {
                users[name] = UserDefinition(name: name, clientSecret: nil)
            } else if let secret = clientSecret(fields[1], user: name, auth: auth, line: line, in: path) {
                users[name] = UserDefinition(name: name, clientSecret: secret, serverPassword: secret.plaintextValue)
            }
            seen[name] = seen[name] ?? line
        }
    }

    /// Splits a key=value list, reporting syntax errors, unknown keys and repeats; nil if any.
    func fields(_ entry: Entry, _ what: String, known: [String]) -> [String: String]? {
        guard let pairs = Self.splitPairs(entry.value) else {
            fail(entry.line, entry.key, "\(what): expected space-separated key=value pairs (quote values containing spaces)")
            return nil
        }
        var result: [String: String] = [:], ok = true
        for (key, value) in pairs {
            let problem = !known.contains(key) ? "unknown key '\(key)'" + Self.didYouMean(key, known)
                : result[key] != nil ? "'\(key)' is given twice" : nil
            if let problem { fail(entry.line, entry.key, "\(what): \(problem)"); ok = false } else { result[key] = value }
        }
        return ok ? result : nil
    }

    /// Classifies a secret as PostgreSQL does (an md5 hash has lowercase hex only) and checks it can verify `auth_type`.
    func clientSecret(_ value: String, user: String, auth: ClientAuthMethod, line: Int, in path: String? = nil) -> ClientSecret? {
        let isMD5Hash = value.count == 35 && value.hasPrefix("md5") && value.dropFirst(3).allSatisfy("0123456789abcdef".contains)
        let secret: ClientSecret =
            if value.hasPrefix("SCRAM-SHA-256$") { .scramVerifier(value) } else if isMD5Hash { .md5Hash(value) } else { .plaintext(value) }
        let problem: String? = switch (secret, auth) {
        case _ where value.isEmpty: "has an empty password"
        case (.scramVerifier, _) where !Self.isSCRAMVerifier(value):
            "has a malformed SCRAM-SHA-256 verifier (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"
        case (.scramVerifier, .md5):
            "has a SCRAM-SHA-256 verifier, which cannot check auth_type = md5 (give a plaintext password or an md5 hash)"
        case (.md5Hash, .scramSHA256):
            "has an md5 hash, which cannot check auth_type = scram-sha-256 (give a plaintext password or a SCRAM-SHA-256 verifier)"
        default: nil
        }
        if let problem { fail(line, user, "user '\(user)' \(problem)", in: path) }
        return problem == nil ? secret : nil
    }

    static func isSCRAMVerifier(_ value: String) -> Bool {
        let parts = value.dropFirst("SCRAM-SHA-256$".count).split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        let head = parts[0].split(separator: ":", omittingEmptySubsequences: false)
        let keys = parts[1].split(separator: ":", omittingEmptySubsequences: false)
        guard head.count == 2, let iterations = Int(head[0]), iterations > 0,
              let salt = Data(base64Encoded: String(head[1])), !salt.isEmpty, keys.count == 2 else { return false }
        return keys.allSatisfy { Data(base64Encoded: String($0))?.count == 32 }
    }

    /// The quoted fields of a userlist line; nil if a field is unquoted or unterminated.
    static func userlistFields(_ s: Substring) -> [String]? {
        var fields: [String] = [], rest = trim(s)
        while rest.first == "\"" {
            var field = "", i = rest.index(after: rest.startIndex)
            while i < rest.endIndex, rest[i] != "\"" || rest[rest.index(after: i)...].first == "\"" {
                field.append(rest[i])
                i = rest.index(i, offsetBy: rest[i] == "\"" ? 2 : 1)
            }
            guard i < rest.endIndex else { return nil }
            fields.append(field)
            rest = trim(rest[rest.index(after: i)...])
        }
        return rest.isEmpty ? fields : nil
    }
}

extension ClientSecret {
    /// The password itself when stored in plaintext; hashes cannot be used to log in to Postgres.
    public var plaintextValue: String? {
        if case .plaintext(let password) = self { password } else { nil }
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
