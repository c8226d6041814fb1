//! The STS exchange's request and answer in STS's real format (AWS's API reference example).

use super::*;

/// An `AssumeRoleWithWebIdentity` answer as STS gives it (AWS's API reference example, its
/// credentials replaced).
const ANSWER: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:team-a:support-bot</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/bedrock-caller/sluice-sidecar</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:sluice-sidecar</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE&amp;more</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-12-06T13:00:00Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

#[test]
fn the_assume_role_request_is_the_documented_form() {
    let identity = WebIdentity {
        endpoint: "https://sts.us-east-1.amazonaws.com".into(),
        role_arn: "arn:aws:iam::123456789012:role/bedrock-caller".into(),
        token_file: PathBuf::from("/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
        session_name: "sluice-sidecar".into(),
    };
    assert_eq!(
        assume_role_form(&identity, "eyJhbGciOi.payload.sig"),
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15\
         &RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbedrock-caller\
         &RoleSessionName=sluice-sidecar&WebIdentityToken=eyJhbGciOi.payload.sig"
    );
}

#[test]
fn the_assume_role_answer_gives_temporary_credentials_with_their_expiry() {
    let credentials = parse_assume_role_answer(ANSWER).unwrap();
    assert_eq!(credentials.access_key_id(), "ASgeIAIOSFODNN7EXAMPLE");
    assert_eq!(
        credentials.secret_access_key(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    );
    assert_eq!(
        credentials.session_token(),
        Some("AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE&more")
    );
    let expiry: jiff::Timestamp = "2026-12-06T13:00:00Z".parse().unwrap();
    assert_eq!(credentials.expiry(), Some(std::time::SystemTime::from(expiry)));
}

#[test]
fn an_answer_without_credentials_says_what_it_lacks() {
    let answer = ANSWER
        .replace("<SessionToken>", "<Other>")
        .replace("</SessionToken>", "</Other>");
    assert_eq!(
        parse_assume_role_answer(&answer).unwrap_err(),
        CredentialsError("the STS answer has no SessionToken".into())
    );
}

#[test]
fn an_sts_error_names_its_code_and_message() {
    let error = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Token expired</Message></Error>
    </ErrorResponse>"#;
    assert_eq!(element(error, "Code").as_deref(), Some("InvalidIdentityToken"));
    assert_eq!(element(error, "Message").as_deref(), Some("Token expired"));
}
