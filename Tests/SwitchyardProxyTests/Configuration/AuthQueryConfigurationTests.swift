import Testing
@testable import SwitchyardProxy

@Suite struct AuthQueryConfigurationTests {
    @Test func defaultsFollowPgBouncer() throws {
        let configuration = try ProxyConfiguration.parse("[switchyard]\nauth_user = app\n" + minimalConfig)
        let authQuery = try #require(configuration.authQuery)
        #expect(authQuery.user == "app")
        #expect(authQuery.query == "SELECT usename, passwd FROM pg_shadow WHERE usename = $1")
        #expect(authQuery.database == nil)
        #expect(authQuery.cacheTTL == .seconds(10))
        #expect(try ProxyConfiguration.parse(minimalConfig).authQuery == nil)
    }

    @Test func everyKeyIsRead() throws {
        let configuration = try ProxyConfiguration.parse("""
            [switchyard]
            auth_user = app
            auth_query = SELECT usename, passwd FROM switchyard.lookup($1)
            auth_dbname = postgres
            auth_cache_ttl = 2.5
            """ + "\n" + minimalConfig)
        #expect(configuration.authQuery == AuthQueryConfiguration(
            user: "app", query: "SELECT usename, passwd FROM switchyard.lookup($1)", database: "postgres", cacheTTL: .milliseconds(2500)))
        let shown = Dictionary(uniqueKeysWithValues: configuration.displayedSettings.map { ($0.key, ($0.value, $0.reloadable)) })
        #expect(shown["auth_user"]?.0 == "app" && shown["auth_user"]?.1 == true)
        #expect(shown["auth_query"]?.0 == "SELECT usename, passwd FROM switchyard.lookup($1)")
        #expect(shown["auth_dbname"]?.0 == "postgres")
        #expect(shown["auth_cache_ttl"]?.0 == "2.5" && shown["auth_cache_ttl"]?.1 == true)
    }

    @Test func mistakesNameTheFileLineAndKey() {
        #expect(configErrorLines("[switchyard]\nauth_user = nobody\n" + minimalConfig) == [
            "proxy.conf:2: auth_user 'nobody' is not defined in [users] or auth_file",
        ])
        #expect(configErrorLines("[switchyard]\nauth_user = app\nauth_query = SELECT 1\n" + minimalConfig) == [
            "proxy.conf:3: auth_query must take the user name as the parameter $1",
        ])
        #expect(configErrorLines("[switchyard]\nauth_query = SELECT $1\nauth_cache_ttl = 5\n" + minimalConfig) == [
            "proxy.conf:2: 'auth_query' has no effect without auth_user",
            "proxy.conf:3: 'auth_cache_ttl' has no effect without auth_user",
        ])
        #expect(configErrorLines("[switchyard]\nauth_user = app\nauth_cache_ttl = -1\n" + minimalConfig) == [
            "proxy.conf:3: 'auth_cache_ttl' must be between 0 and 31536000 seconds, got -1",
        ])
        #expect(configErrorLines("[switchyard]\nauth_type = trust\nauth_user = app\n" + minimalConfig) == [
            "proxy.conf:2: auth_user has no effect with auth_type = trust (no password is checked)",
        ])
    }

    @Test func credentialStoreLooksUpUnknownRolesOnlyWithAuthUser() throws {
        #expect(try ClientCredentialStore(configuration: .parse("[switchyard]\nauth_user = app\n" + minimalConfig)).looksUpUnknownRoles)
        #expect(try !ClientCredentialStore(configuration: .parse(minimalConfig)).looksUpUnknownRoles)
    }
}
