"""Binance websocket frames for tests: payloads copied from Binance's documentation.

Spot payloads are the examples of ``../shared/data/docs/web-socket-streams.md``; the USD-M futures
ones follow the futures documentation (extra ``T``/``pu`` fields, ``e``/``E`` on bookTicker).
Real recorded frames are read from ``../shared/data/ws/`` by the tests themselves.
"""

from __future__ import annotations


def wrap(stream: str, payload: str) -> str:
    """The combined-stream wrapper around a raw payload."""
    return f'{{"stream":"{stream}","data":{payload}}}'


TRADE = (
    '{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",'
    '"T":1672515782136,"m":true,"M":true}'
)
TRADE_US = (  # a stream opened with timeUnit=MICROSECOND
    '{"e":"trade","E":1741046401123457,"s":"TRXUSDT","t":571822367,"p":"0.23550000",'
    '"q":"1042.10000000","T":1741046401123456,"m":false,"M":true}'
)
AGG_TRADE = (
    '{"e":"aggTrade","E":1672515782136,"s":"BNBBTC","a":12345,"p":"0.001","q":"100",'
    '"f":100,"l":105,"T":1672515782136,"m":true,"M":true}'
)
KLINE = (
    '{"e":"kline","E":1672515782136,"s":"BNBBTC","k":{"t":1672515780000,"T":1672515839999,'
    '"s":"BNBBTC","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025",'
    '"l":"0.0015","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}'
)
BOOK_TICKER = (  # spot: no e, no E
    '{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000",'
    '"A":"40.66000000"}'
)
FUTURES_BOOK_TICKER_NO_T = (
    '{"e":"bookTicker","u":400900217,"E":1568014460893,"s":"BNBUSDT","b":"25.35190000",'
    '"B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
)
DEPTH = (
    '{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
    '"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
)
PARTIAL_DEPTH = '{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}'
FUTURES_PARTIAL_DEPTH = (
    '{"e":"depthUpdate","E":1571889248277,"T":1571889248276,"s":"BTCUSDT","U":390497796,'
    '"u":390497878,"pu":390497794,"b":[["7403.89","0.002"],["7403.90","3.906"]],'
    '"a":[["7405.96","3.340"]]}'
)
SERVER_SHUTDOWN = '{"e":"serverShutdown","E":1770123456789}'
REPLY = '{"result":null,"id":1}'
LIST_REPLY = '{"result":["btcusdt@aggTrade"],"id":3}'
ERROR = '{"code":2,"msg":"Invalid request: too many parameters"}'
ERROR_WITH_ID = '{"code":0,"msg":"Unknown property","id":5}'
NESTED_ERROR = '{"error":{"code":2,"msg":"Invalid request: property name must be a string"},"id":7}'
MINI_TICKER = (
    '{"e":"24hrMiniTicker","E":1672515782136,"s":"BNBBTC","c":"0.0025","o":"0.0010",'
    '"h":"0.0025","l":"0.0010","v":"10000","q":"18"}'
)
