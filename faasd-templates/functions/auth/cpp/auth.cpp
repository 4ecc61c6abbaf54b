#include "auth.hpp"

namespace auth {

namespace {

// The resource vSwarm puts into every policy: a literal template string.
const char kMethodArn[] =
    "arn:aws:execute-api:{regionId}:{accountId}:{apiId}/{stage}/{httpVerb}/[{resource}/[{child-resources}]]";

}  // namespace

AuthResponse generate_policy(const std::string& principal_id, const std::string& effect, const std::string& resource) {
    AuthResponse r;
    r.principal_id = principal_id;
    r.policy_document.version = "2012-10-17";
    r.policy_document.statements.push_back(Statement{"execute-api:Invoke", effect, resource});
    r.context.string_key = "stringval";
    r.context.number_key = 123;
    r.context.boolean_key = true;
    return r;
}

// %+v prints a struct as {name:value name:value}, a slice as [elem elem],
// strings unquoted, booleans as true/false.
std::string go_format(const AuthResponse& r) {
    std::string statements;
    for (const Statement& s : r.policy_document.statements) {
        if (!statements.empty()) statements += ' ';
        statements += "{Action:" + s.action + " Effect:" + s.effect + " Resource:" + s.resource + "}";
    }
    return "{principalId:" + r.principal_id + " policyDocument:{Version:" + r.policy_document.version +
           " Statement:[" + statements + "]} context:{stringKey:" + r.context.string_key +
           " numberKey:" + std::to_string(r.context.number_key) +
           " booleanKey:" + (r.context.boolean_key ? "true" : "false") + "}}";
}

std::string authorize(const std::string& token) {
    if (token == "allow") return go_format(generate_policy("user", "Allow", kMethodArn));
    if (token == "deny") return go_format(generate_policy("user", "Deny", kMethodArn));
    if (token == "unauthorized") return "Unauthorized";
    return "Error: Invalid token";
}

std::string answer(const std::string& token) {
    return "fn: Auth | token: " + token + " | resp: " + authorize(token) + " | runtime: cpp";
}

}  // namespace auth
