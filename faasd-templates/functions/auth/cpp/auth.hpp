// vSwarm's auth function (benchmarks/auth/go) in C++.
#pragma once

#include <string>
#include <vector>

namespace auth {

// The policy vSwarm's Go version builds, to be printed the way Go's fmt
// "%+v" prints its structs (with the Go field names noted here).
struct Statement {
    std::string action;    // Action
    std::string effect;    // Effect
    std::string resource;  // Resource
};

struct PolicyDocument {
    std::string version;               // Version
    std::vector<Statement> statements;  // Statement
};

struct Context {
    std::string string_key;   // stringKey
    long number_key = 0;      // numberKey
    bool boolean_key = false;  // booleanKey
};

struct AuthResponse {
    std::string principal_id;        // principalId
    PolicyDocument policy_document;  // policyDocument
    Context context;                 // context
};

// vSwarm's generatePolicy(principalId, effect, resource).
AuthResponse generate_policy(const std::string& principal_id, const std::string& effect, const std::string& resource);

// What Go's fmt.Sprintf("%+v", r) prints for the Go version's structs.
std::string go_format(const AuthResponse& r);

// The reply for a token: the allow/deny policy, "Unauthorized", or
// "Error: Invalid token".
std::string authorize(const std::string& token);

// vSwarm's answer line: "fn: Auth | token: <token> | resp: <reply> | runtime: cpp".
std::string answer(const std::string& token);

}  // namespace auth
