// Unit tests of the auth handler: vSwarm's Go outputs, character for character.
#include <string>

#include "auth.hpp"
#include "faas.hpp"
#include "faas_test.hpp"

namespace {

std::string call(const std::string& body) {
    faas::Response r = faas::test::post(body);
    EXPECT_EQ(r.status, 200);
    return r.body;
}

std::string policy(const std::string& effect) {
    return "{principalId:user policyDocument:{Version:2012-10-17 Statement:[{Action:execute-api:Invoke Effect:" + effect +
           " Resource:arn:aws:execute-api:{regionId}:{accountId}:{apiId}/{stage}/{httpVerb}/[{resource}/[{child-resources}]]}]}"
           " context:{stringKey:stringval numberKey:123 booleanKey:true}}";
}

}  // namespace

FAAS_TEST(allow_and_deny_print_the_policy) {
    EXPECT_EQ(call("allow"), "fn: Auth | token: allow | resp: " + policy("Allow") + " | runtime: cpp");
    EXPECT_EQ(call("deny"), "fn: Auth | token: deny | resp: " + policy("Deny") + " | runtime: cpp");
}

FAAS_TEST(the_other_tokens) {
    EXPECT_EQ(call("unauthorized"), "fn: Auth | token: unauthorized | resp: Unauthorized | runtime: cpp");
    EXPECT_EQ(call("bla bla"), "fn: Auth | token: bla bla | resp: Error: Invalid token | runtime: cpp");
    EXPECT_EQ(call(""), "fn: Auth | token:  | resp: Error: Invalid token | runtime: cpp");
    EXPECT_EQ(call("Allow"), "fn: Auth | token: Allow | resp: Error: Invalid token | runtime: cpp");
}

FAAS_TEST(one_trailing_newline_is_dropped) {
    EXPECT_EQ(call("allow\n"), "fn: Auth | token: allow | resp: " + policy("Allow") + " | runtime: cpp");
    EXPECT_EQ(call("unauthorized\r\n"), "fn: Auth | token: unauthorized | resp: Unauthorized | runtime: cpp");
    EXPECT_EQ(call("deny\n\n"), "fn: Auth | token: deny\n | resp: Error: Invalid token | runtime: cpp");
    EXPECT_EQ(call(" allow"), "fn: Auth | token:  allow | resp: Error: Invalid token | runtime: cpp");
}

FAAS_TEST(long_tokens_are_refused) {
    faas::Request req;
    req.body.assign(4097, 'a');
    EXPECT_EQ(handle(req).status, 413);
    req.body.assign(4096, 'a');
    EXPECT_EQ(handle(req).status, 200);
}

FAAS_TEST(go_format_of_several_statements) {
    auth::AuthResponse r = auth::generate_policy("p", "Allow", "r1");
    r.policy_document.statements.push_back(auth::Statement{"a", "Deny", "r2"});
    r.context.boolean_key = false;
    EXPECT_EQ(auth::go_format(r),
              "{principalId:p policyDocument:{Version:2012-10-17 Statement:[{Action:execute-api:Invoke Effect:Allow "
              "Resource:r1} {Action:a Effect:Deny Resource:r2}]} context:{stringKey:stringval numberKey:123 "
              "booleanKey:false}}");
}
