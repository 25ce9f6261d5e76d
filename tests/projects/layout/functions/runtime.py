"""Reports what Runtime exposes: every function and asset, private ones included."""


def handler(context, event, callback):
    functions = Runtime.get_functions()
    assets = Runtime.get_assets()
    helper = Runtime.require(functions["helper"].path)
    return callback(None, {
        "functions": sorted(functions),
        "assets": sorted(assets),
        "helper_value": helper.secret_value(),
        "private_asset_text": assets["/secret.txt"].open(),
        "camel_case_same": sorted(Runtime.getFunctions()) == sorted(functions)
        and sorted(Runtime.getAssets()) == sorted(assets),
    })
