exports.handler = (context, event, callback) => callback(null, {
  DOMAIN_NAME: context.DOMAIN_NAME, SERVICE_SID: context.SERVICE_SID || null, ENVIRONMENT_SID: context.ENVIRONMENT_SID || null,
});
