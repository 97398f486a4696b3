// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MiningRegistry — rounds, chunk leases and proof-of-work-checked gradient submissions of R3MES.
/// @notice The commit point of a miner's transaction. See DESIGN.md "Contract MiningRegistry" and "Proof of work".
contract MiningRegistry {
    struct Round {
        string modelCid;
        bytes32 specHash;
        uint32 chunkCount;
        uint8 difficulty;
        uint64 deadline;
        /// Chunks below this index have been claimed at least once.
        uint32 nextChunk;
        uint32 submittedCount;
        bool exists;
    }

    struct Claim {
        address miner;
        uint64 leaseExpiry;
    }

    struct Submission {
        address miner;
        string cid;
        bytes32 gradientHash;
        uint64 powNonce;
        uint64 blockNumber;
        bool completed;
    }

    address public immutable owner;
    /// How long a claim holds a chunk, in seconds; an expired lease can be claimed again.
    uint64 public immutable leaseDuration;

    uint256[] private roundIds;
    mapping(uint256 => Round) private rounds;
    mapping(uint256 => mapping(uint32 => Claim)) private claims;
    mapping(uint256 => mapping(uint32 => Submission)) private submissions;

    struct Verdict {
        uint8 verdict;
        bytes32 reportHash;
    }

    /// Accounts allowed to record verdicts (DESIGN.md "Verification"), set by the owner.
    mapping(address => bool) private verifiers;
    /// One verdict per (round, chunk, verifier); verdict 0 = none.
    mapping(uint256 => mapping(uint32 => mapping(address => Verdict))) private verdicts;

    /// A round's outcome as the owner's round coordinator records it (DESIGN.md "Learning rounds").
    struct Finalization {
        string modelCid;
        bytes32 weightsHash;
        uint32 acceptedCount;
        /// Accuracy on the held-out test split, in parts per million.
        uint32 testAccuracyPpm;
        uint64 finalizedAt;
        bool finalized;
    }

    mapping(uint256 => Finalization) private finalizations;

    event RoundOpened(
        uint256 indexed roundId,
        string modelCid,
        string spec,
        bytes32 specHash,
        uint32 chunkCount,
        uint8 difficulty,
        uint64 deadline
    );
    event ChunkClaimed(uint256 indexed roundId, uint32 indexed chunkId, address indexed miner, uint64 leaseExpiry);
    event GradientSubmitted(
        uint256 indexed roundId,
        uint32 indexed chunkId,
        address indexed miner,
        string cid,
        bytes32 gradientHash,
        uint64 powNonce
    );
    event ChunkCompleted(uint256 indexed roundId, uint32 indexed chunkId, address indexed miner);
    event VerifierSet(address indexed verifier, bool allowed);
    event GradientVerified(
        uint256 indexed roundId,
        uint32 indexed chunkId,
        address indexed verifier,
        uint8 verdict,
        bytes32 reportHash
    );
    event RoundFinalized(
        uint256 indexed roundId,
        string modelCid,
        bytes32 weightsHash,
        uint32 acceptedCount,
        uint32 testAccuracyPpm
    );

    error NotOwner();
    error RoundNotOpen(uint256 roundId);
    error RoundExpired(uint256 roundId, uint64 deadline);
    error ChunkNotClaimed(uint256 roundId, uint32 chunkId);
    error LeaseExpired(uint256 roundId, uint32 chunkId, uint64 leaseExpiry);
    error AlreadySubmitted(uint256 roundId, uint32 chunkId, address miner, bytes32 gradientHash);
    error InsufficientWork(bytes32 powHash, uint8 difficulty);
    error InvalidDifficulty(uint8 difficulty);
    error RoundExists(uint256 roundId);
    error InvalidChunkCount(uint32 chunkCount);
    error NoFreeChunk(uint256 roundId);
    error NotVerifier(address account);
    error NoSubmission(uint256 roundId, uint32 chunkId);
    error InvalidVerdict(uint8 verdict);
    error AlreadyVerified(uint256 roundId, uint32 chunkId, address verifier, uint8 verdict, bytes32 reportHash);
    error RoundAlreadyFinalized(uint256 roundId);
    error InvalidAccuracy(uint32 testAccuracyPpm);

    constructor(uint64 leaseSeconds) {
        owner = msg.sender;
        leaseDuration = leaseSeconds;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @param spec The round's task spec as canonical JSON; the contract keeps its sha256 and emits it.
    function openRound(
        uint256 roundId,
        string calldata modelCid,
        string calldata spec,
        uint32 chunkCount,
        uint8 difficulty,
        uint64 deadline
    ) external onlyOwner {
        if (rounds[roundId].exists) revert RoundExists(roundId);
        if (difficulty == 0 || difficulty > 64) revert InvalidDifficulty(difficulty);
        if (chunkCount == 0) revert InvalidChunkCount(chunkCount);
        if (deadline <= block.timestamp) revert RoundExpired(roundId, deadline);
        bytes32 specHash = sha256(bytes(spec));
        rounds[roundId] = Round({
            modelCid: modelCid,
            specHash: specHash,
            chunkCount: chunkCount,
            difficulty: difficulty,
            deadline: deadline,
            nextChunk: 0,
            submittedCount: 0,
            exists: true
        });
        roundIds.push(roundId);
        emit RoundOpened(roundId, modelCid, spec, specHash, chunkCount, difficulty, deadline);
    }

    /// @notice Claims a free chunk: a never-claimed one first, else one whose lease expired without a submission.
    function claimChunk(uint256 roundId) external returns (uint32 chunkId) {
        Round storage round = rounds[roundId];
        if (!round.exists || finalizations[roundId].finalized) revert RoundNotOpen(roundId);
        if (block.timestamp > round.deadline) revert RoundExpired(roundId, round.deadline);
        if (round.nextChunk < round.chunkCount) {
            chunkId = round.nextChunk;
            round.nextChunk = chunkId + 1;
        } else {
            bool found = false;
            for (uint32 i = 0; i < round.chunkCount; i++) {
                if (submissions[roundId][i].miner == address(0) && claims[roundId][i].leaseExpiry < block.timestamp) {
                    chunkId = i;
                    found = true;
                    break;
                }
            }
            if (!found) revert NoFreeChunk(roundId);
        }
        uint64 expiry = uint64(block.timestamp) + leaseDuration;
        claims[roundId][chunkId] = Claim({miner: msg.sender, leaseExpiry: expiry});
        emit ChunkClaimed(roundId, chunkId, msg.sender, expiry);
    }

    function submitGradient(
        uint256 roundId,
        uint32 chunkId,
        string calldata cid,
        bytes32 gradientHash,
        uint64 powNonce
    ) external {
        Round storage round = rounds[roundId];
        if (!round.exists) revert RoundNotOpen(roundId);
        Submission storage existing = submissions[roundId][chunkId];
        if (existing.miner != address(0)) {
            revert AlreadySubmitted(roundId, chunkId, existing.miner, existing.gradientHash);
        }
        // After AlreadySubmitted, like the deadline: a miner replaying its own submission learns it is recorded.
        if (finalizations[roundId].finalized) revert RoundNotOpen(roundId);
        if (block.timestamp > round.deadline) revert RoundExpired(roundId, round.deadline);
        Claim storage claim = claims[roundId][chunkId];
        if (chunkId >= round.chunkCount || claim.miner != msg.sender) revert ChunkNotClaimed(roundId, chunkId);
        if (claim.leaseExpiry < block.timestamp) revert LeaseExpired(roundId, chunkId, claim.leaseExpiry);

        bytes32 challenge = powChallenge(block.chainid, address(this), msg.sender, roundId, chunkId, gradientHash, cid);
        bytes32 powHash = sha256(abi.encodePacked(challenge, powNonce));
        if (leadingZeroBits(powHash) < round.difficulty) revert InsufficientWork(powHash, round.difficulty);

        submissions[roundId][chunkId] = Submission({
            miner: msg.sender,
            cid: cid,
            gradientHash: gradientHash,
            powNonce: powNonce,
            blockNumber: uint64(block.number),
            completed: false
        });
        round.submittedCount += 1;
        emit GradientSubmitted(roundId, chunkId, msg.sender, cid, gradientHash, powNonce);
    }

    /// @notice Marks the caller's submitted chunk complete. Idempotent: completing twice emits once.
    function completeChunk(uint256 roundId, uint32 chunkId) external {
        Submission storage submission = submissions[roundId][chunkId];
        if (submission.miner != msg.sender) revert ChunkNotClaimed(roundId, chunkId);
        if (submission.completed) return;
        submission.completed = true;
        emit ChunkCompleted(roundId, chunkId, msg.sender);
    }

    /// @notice Allows or disallows an account to record verdicts.
    function setVerifier(address verifier, bool allowed) external onlyOwner {
        verifiers[verifier] = allowed;
        emit VerifierSet(verifier, allowed);
    }

    function isVerifier(address account) external view returns (bool) {
        return verifiers[account];
    }

    /// @notice Records the caller's verdict on a submitted chunk: once per (round, chunk, verifier), so a verifier
    /// cannot change its mind and several verifiers judge independently.
    /// @param verdict 1 accepted_exact, 2 accepted_within_tolerance; 16 unavailable, 17 malformed, 18 wrong task,
    /// 19 recompute mismatch, 20 no improvement (DESIGN.md "Verification").
    /// @param reportHash sha256 of the verification report (canonical JSON), pinned by the verifier.
    function recordVerdict(uint256 roundId, uint32 chunkId, uint8 verdict, bytes32 reportHash) external {
        if (!verifiers[msg.sender]) revert NotVerifier(msg.sender);
        if (submissions[roundId][chunkId].miner == address(0)) revert NoSubmission(roundId, chunkId);
        if (!(verdict == 1 || verdict == 2 || (verdict >= 16 && verdict <= 20))) revert InvalidVerdict(verdict);
        Verdict storage existing = verdicts[roundId][chunkId][msg.sender];
        if (existing.verdict != 0) {
            revert AlreadyVerified(roundId, chunkId, msg.sender, existing.verdict, existing.reportHash);
        }
        // The round's aggregate took the verdicts it had: a later one would make it unreproducible.
        if (finalizations[roundId].finalized) revert RoundNotOpen(roundId);
        verdicts[roundId][chunkId][msg.sender] = Verdict({verdict: verdict, reportHash: reportHash});
        emit GradientVerified(roundId, chunkId, msg.sender, verdict, reportHash);
    }

    /// @notice Records a round's outcome, once: the aggregated weights (by CID and sha256), how many gradients went
    /// into them and their accuracy on the held-out test split. The round is closed from then on: claims and
    /// submissions revert RoundNotOpen, and so do new verdicts (the aggregate took those it had, and anyone recomputes it
    /// from them); completions are still recorded.
    function finalizeRound(
        uint256 roundId,
        string calldata modelCid,
        bytes32 weightsHash,
        uint32 acceptedCount,
        uint32 testAccuracyPpm
    ) external onlyOwner {
        if (!rounds[roundId].exists) revert RoundNotOpen(roundId);
        if (finalizations[roundId].finalized) revert RoundAlreadyFinalized(roundId);
        if (testAccuracyPpm > 1_000_000) revert InvalidAccuracy(testAccuracyPpm);
        finalizations[roundId] = Finalization({
            modelCid: modelCid,
            weightsHash: weightsHash,
            acceptedCount: acceptedCount,
            testAccuracyPpm: testAccuracyPpm,
            finalizedAt: uint64(block.timestamp),
            finalized: true
        });
        emit RoundFinalized(roundId, modelCid, weightsHash, acceptedCount, testAccuracyPpm);
    }

    /// @return finalized false (and zero values) until `finalizeRound` recorded the round.
    function getFinalization(uint256 roundId)
        external
        view
        returns (
            bool finalized,
            string memory modelCid,
            bytes32 weightsHash,
            uint32 acceptedCount,
            uint32 testAccuracyPpm,
            uint64 finalizedAt
        )
    {
        Finalization storage f = finalizations[roundId];
        return (f.finalized, f.modelCid, f.weightsHash, f.acceptedCount, f.testAccuracyPpm, f.finalizedAt);
    }

    /// @return verdict 0 when `verifier` recorded none for the chunk.
    function getVerdict(uint256 roundId, uint32 chunkId, address verifier)
        external
        view
        returns (uint8 verdict, bytes32 reportHash)
    {
        Verdict storage v = verdicts[roundId][chunkId][verifier];
        return (v.verdict, v.reportHash);
    }

    /// @notice sha256(abi.encode(chainId, registry, miner, roundId, chunkId, gradientHash, sha256(utf8(cid)))).
    function powChallenge(
        uint256 chainId,
        address registry,
        address miner,
        uint256 roundId,
        uint32 chunkId,
        bytes32 gradientHash,
        string memory cid
    ) public pure returns (bytes32) {
        return sha256(abi.encode(chainId, registry, miner, roundId, chunkId, gradientHash, sha256(bytes(cid))));
    }

    function leadingZeroBits(bytes32 value) public pure returns (uint256 bits) {
        uint256 v = uint256(value);
        if (v == 0) return 256;
        while (v & (1 << 255) == 0) {
            v <<= 1;
            bits++;
        }
    }

    function roundCount() external view returns (uint256) {
        return roundIds.length;
    }

    function roundIdAt(uint256 index) external view returns (uint256) {
        return roundIds[index];
    }

    function getRound(uint256 roundId)
        external
        view
        returns (
            string memory modelCid,
            bytes32 specHash,
            uint32 chunkCount,
            uint8 difficulty,
            uint64 deadline,
            uint32 nextChunk,
            uint32 submittedCount,
            bool exists
        )
    {
        Round storage r = rounds[roundId];
        return (r.modelCid, r.specHash, r.chunkCount, r.difficulty, r.deadline, r.nextChunk, r.submittedCount, r.exists);
    }

    function getClaim(uint256 roundId, uint32 chunkId) external view returns (address miner, uint64 leaseExpiry) {
        Claim storage c = claims[roundId][chunkId];
        return (c.miner, c.leaseExpiry);
    }

    function getSubmission(uint256 roundId, uint32 chunkId)
        external
        view
        returns (
            address miner,
            string memory cid,
            bytes32 gradientHash,
            uint64 powNonce,
            uint64 blockNumber,
            bool completed
        )
    {
        Submission storage s = submissions[roundId][chunkId];
        return (s.miner, s.cid, s.gradientHash, s.powNonce, s.blockNumber, s.completed);
    }
}
