-- The User-Agent patterns bot-detection blocks by default (PCRE, matched
-- case-insensitively, anywhere in the header). luagate's own list, written
-- from the user-agent tokens the crawlers' operators publish (sources in
-- docs/plugins/bot-detection.md); it is not Kong's rules.lua. HTTP
-- libraries and command-line clients (curl, wget, python-requests, Go,
-- okhttp...) are not blocked: API clients use them.

return {
  bots = {
    -- any word ending in bot, spider, crawl..., scraper, archiver or
    -- indexer, i.e. the keyword not followed by a letter (Googlebot,
    -- bingbot, YandexBot, Baiduspider, DuckDuckBot, Applebot, GPTBot,
    -- ClaudeBot, CCBot, Bytespider, AhrefsBot, SemrushBot, MJ12bot,
    -- ia_archiver, Twitterbot, Slackbot, UptimeRobot, Screaming Frog SEO
    -- Spider...; not Bottle or Abbott), except the CUBOT phone brand
    [[(?<!cu)(?:bot|spider|crawl[a-z]*|scraper|archiver|indexer)(?![a-z])]],

    -- search engines' and social networks' fetchers without such a token
    [[facebookexternalhit|facebookcatalog|meta-external(?:agent|fetcher)]],
    [[mediapartners-google|apis-google|feedfetcher-google|google-read-aloud]],
    [[google-inspectiontool|googleother|google favicon|google web preview]],
    [[bingpreview|\bslurp\b|embedly|iframely|skypeuripreview|vkshare]],

    -- AI assistants' and model trainers' fetchers
    [[chatgpt-user|claude-(?:web|user)|anthropic-ai|perplexity-user]],
    [[cohere-ai]],

    -- archivers and site copiers
    [[\bnutch\b|heritrix|httrack|webcopier|offline explorer|webzip]],
    [[teleport pro|sitesucker|\bscrapy\b]],

    -- vulnerability scanners
    [[nikto|sqlmap|nmap scripting engine|masscan|zgrab|wpscan|nuclei]],
    [[dirbuster|gobuster]],
  },
}
